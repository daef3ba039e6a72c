import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { RunComparison } from "../../../api/types";
import { isRunActive } from "../../../api/status";

export const runCompareKey = (ids: number[]) => ["runs", "compare", ids] as const;

/** Several runs' curves aligned by step (one column per run id) and their configs side by side. */
export function compareRuns(ids: number[], signal?: AbortSignal): Promise<RunComparison> {
  return apiFetch<RunComparison>("/api/v1/runs/compare/", { query: { ids: ids.join(",") }, signal });
}

export const runCompareQueryOptions = (ids: number[]) =>
  queryOptions({
    queryKey: runCompareKey(ids),
    queryFn: ({ signal }) => compareRuns(ids, signal),
    // Curves grow while any compared run trains.
    refetchInterval: (query) => (query.state.data?.runs.some((r) => isRunActive(r.status)) ? 5000 : false),
  });

export function useRunCompare(ids: number[]) {
  return useQuery({ ...runCompareQueryOptions(ids), enabled: ids.length >= 2 });
}
