import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Membership, Role } from "../../../api/types";
import { membersKey } from "./list-members";

export function updateMemberRole({ membershipId, role }: { teamId: number; membershipId: number; role: Role }): Promise<Membership> {
  return apiFetch<Membership>(`/api/v1/memberships/${membershipId}/`, { method: "PATCH", json: { role } });
}

export function removeMember({ membershipId }: { teamId: number; membershipId: number }): Promise<void> {
  return apiFetch<void>(`/api/v1/memberships/${membershipId}/`, { method: "DELETE" });
}

export function useUpdateMemberRole() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: updateMemberRole,
    onSuccess: (_m, input) => queryClient.invalidateQueries({ queryKey: membersKey(input.teamId) }),
  });
}

export function useRemoveMember() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: removeMember,
    onSuccess: (_m, input) => queryClient.invalidateQueries({ queryKey: membersKey(input.teamId) }),
  });
}
