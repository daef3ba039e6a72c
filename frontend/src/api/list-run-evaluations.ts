import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { Evaluation } from "./types";

// Shared: the run page lists the evaluations about its run (its validation rows, the gate).
export const runEvaluationsKey = (runId: number) => ["evaluations", { runId }] as const;

export function listRunEvaluations(runId: number): Promise<Page<Evaluation>> {
  return apiFetch<Page<Evaluation>>("/api/v1/evaluations/", { query: { run: runId, page_size: 50 } });
}

export const runEvaluationsQueryOptions = (runId: number) =>
  queryOptions({
    queryKey: runEvaluationsKey(runId),
    queryFn: () => listRunEvaluations(runId),
    refetchInterval: (query) => (query.state.data?.results.some((e) => e.status === "queued" || e.status === "running") ? 3000 : false),
  });

export function useRunEvaluations(runId: number) {
  return useQuery(runEvaluationsQueryOptions(runId));
}
