import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { TrainingRun } from "../../../api/types";
import { isRunActive } from "../../../api/status";

export const runKey = (runId: number) => ["runs", "detail", runId] as const;

export function getRun(runId: number): Promise<TrainingRun> {
  return apiFetch<TrainingRun>(`/api/v1/runs/${runId}/`);
}

export const runQueryOptions = (runId: number) =>
  queryOptions({
    queryKey: runKey(runId),
    queryFn: () => getRun(runId),
    refetchInterval: (query) => (query.state.data && isRunActive(query.state.data.status) ? 2000 : false),
  });

export function useRun(runId: number) {
  return useQuery(runQueryOptions(runId));
}
