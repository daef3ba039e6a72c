import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { Membership } from "../../../api/types";

export const membersKey = (teamId: number) => ["members", { teamId }] as const;

export function listMembers(teamId: number): Promise<Page<Membership> | Membership[]> {
  return apiFetch<Page<Membership> | Membership[]>("/api/v1/memberships/", { query: { team: teamId, page_size: 200 } });
}

export const membersQueryOptions = (teamId: number) =>
  queryOptions({ queryKey: membersKey(teamId), queryFn: () => listMembers(teamId) });

export function useMembers(teamId: number) {
  return useQuery(membersQueryOptions(teamId));
}
