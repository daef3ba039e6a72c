import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, resultsOf, type Page } from "../../../api/client";
import type { Checkpoint } from "../../../api/types";

export const checkpointsKey = (runId: number) => ["runs", "checkpoints", runId] as const;

export async function listCheckpoints(runId: number): Promise<Checkpoint[]> {
  return resultsOf(await apiFetch<Page<Checkpoint> | Checkpoint[]>(`/api/v1/runs/${runId}/checkpoints/`));
}

export const checkpointsQueryOptions = (runId: number, live: boolean) =>
  queryOptions({ queryKey: checkpointsKey(runId), queryFn: () => listCheckpoints(runId), refetchInterval: live ? 5000 : false });

export function useCheckpoints(runId: number, live: boolean) {
  return useQuery(checkpointsQueryOptions(runId, live));
}
