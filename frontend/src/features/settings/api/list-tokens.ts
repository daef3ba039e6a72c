import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { ApiToken } from "../../../api/types";

export const tokensKey = (teamId: number) => ["tokens", { teamId }] as const;

export function listTokens(teamId: number): Promise<Page<ApiToken>> {
  return apiFetch<Page<ApiToken>>("/api/v1/tokens/", { query: { team: teamId, page_size: 100 } });
}

export const tokensQueryOptions = (teamId: number) =>
  queryOptions({ queryKey: tokensKey(teamId), queryFn: () => listTokens(teamId) });

export function useTokens(teamId: number) {
  return useQuery(tokensQueryOptions(teamId));
}
