import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Membership, MembershipCreateRequest } from "../../../api/types";
import { membersKey } from "./list-members";

/** Creates the account (or adds an existing one by username) to the team. */
export function addMember({ password, ...input }: MembershipCreateRequest): Promise<Membership> {
  // Without a password the server adds an existing account; with one it creates the account.
  return apiFetch<Membership>("/api/v1/memberships/", { method: "POST", json: password ? { ...input, password } : input });
}

export function useAddMember() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: addMember,
    onSuccess: (_m, input) => queryClient.invalidateQueries({ queryKey: membersKey(input.team) }),
  });
}
