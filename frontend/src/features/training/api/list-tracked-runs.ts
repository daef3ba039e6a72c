import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { TrackedRun } from "../../../api/types";

export const trackedRunsKey = (runId: number) => ["tracked-runs", { runId }] as const;

export function listTrackedRuns(runId: number): Promise<Page<TrackedRun>> {
  return apiFetch<Page<TrackedRun>>("/api/v1/tracked-runs/", { query: { run: runId } });
}

/** The run's MLflow / W&B runs; polled while it is live (a tracker's run appears a few seconds in). */
export function useTrackedRuns(runId: number, live: boolean) {
  return useQuery({
    ...queryOptions({ queryKey: trackedRunsKey(runId), queryFn: () => listTrackedRuns(runId) }),
    refetchInterval: live ? 5000 : false,
  });
}
