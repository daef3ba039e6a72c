import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Membership, Role } from "../../../api/types";
import { membersKey } from "./list-members";

export interface AddMemberInput {
  teamId: number;
  username: string;
  email: string;
  password: string;
  role: Role;
}

/** Creates the account (or adds an existing one by username) to the team. */
export function addMember({ teamId, username, email, password, role }: AddMemberInput): Promise<Membership> {
  // Without a password the server adds an existing account; with one it creates the account.
  const body = { team: teamId, username, email, role, ...(password ? { password } : {}) };
  return apiFetch<Membership>("/api/v1/memberships/", { method: "POST", json: body });
}

export function useAddMember() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: addMember,
    onSuccess: (_m, input) => queryClient.invalidateQueries({ queryKey: membersKey(input.teamId) }),
  });
}
