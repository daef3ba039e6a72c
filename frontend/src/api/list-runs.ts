import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { TrainingRun } from "./types";
import { isRunActive } from "./status";

export const runsKey = (projectId: number) => ["runs", { projectId }] as const;

export function listRuns(projectId: number): Promise<Page<TrainingRun>> {
  return apiFetch<Page<TrainingRun>>("/api/v1/runs/", { query: { project: projectId, page_size: 100 } });
}

export const runsQueryOptions = (projectId: number) =>
  queryOptions({
    queryKey: runsKey(projectId),
    queryFn: () => listRuns(projectId),
    refetchInterval: (query) => (query.state.data?.results.some((r) => isRunActive(r.status)) ? 3000 : false),
  });

export function useRuns(projectId: number, enabled = true) {
  return useQuery({ ...runsQueryOptions(projectId), enabled });
}
