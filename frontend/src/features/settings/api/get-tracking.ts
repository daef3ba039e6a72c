import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { TeamTracking } from "../../../api/types";

export const trackingKey = (teamId: number) => ["tracking-settings", { teamId }] as const;

export function getTracking(teamId: number): Promise<TeamTracking> {
  return apiFetch<TeamTracking>(`/api/v1/tracking-settings/${teamId}/`);
}

export const trackingQueryOptions = (teamId: number) =>
  queryOptions({ queryKey: trackingKey(teamId), queryFn: () => getTracking(teamId) });

export function useTracking(teamId: number) {
  return useQuery(trackingQueryOptions(teamId));
}
