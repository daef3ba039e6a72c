import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Membership, MembershipUpdateRequest } from "../../../api/types";
import { membersKey } from "./list-members";

/** One membership of a team; the team's id names the list to refresh. */
interface MembershipRef {
  teamId: number;
  membershipId: number;
}

export function updateMemberRole({ membershipId, role }: MembershipRef & MembershipUpdateRequest): Promise<Membership> {
  return apiFetch<Membership>(`/api/v1/memberships/${membershipId}/`, { method: "PATCH", json: { role } satisfies MembershipUpdateRequest });
}

export function removeMember({ membershipId }: MembershipRef): Promise<void> {
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
