import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { Evaluation } from "./types";

// Shared: the run page lists the evaluations about its run (its validation rows, the gate).
export const runEvaluationsKey = (runId: number) => ["evaluations", { runId }] as const;

export function listRunEvaluations(runId: number): Promise<Page<Evaluation>> {
  return apiFetch<Page<Evaluation>>("/api/v1/evaluations/", { query: { run: runId, page_size: 50 } });
}

// The worker starts a run's own evaluations (its validation rows, its fact check, the gate) just
// after it marks the run succeeded, so a page that saw the run end looks for them a while longer.
export const EVALUATIONS_AFTER_RUN_MS = 60_000;

/** watchUntil: until when (epoch ms) to look for new evaluations even when none is under way. */
export const runEvaluationsQueryOptions = (runId: number, watchUntil = 0) =>
  queryOptions({
    queryKey: runEvaluationsKey(runId),
    queryFn: () => listRunEvaluations(runId),
    refetchInterval: (query) =>
      query.state.data?.results.some((e) => e.status === "queued" || e.status === "running") || Date.now() < watchUntil ? 3000 : false,
  });

export function useRunEvaluations(runId: number, watchUntil?: number) {
  return useQuery(runEvaluationsQueryOptions(runId, watchUntil));
}
