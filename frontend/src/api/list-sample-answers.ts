import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { EvalResult } from "./types";

// Shared: the run page shows the first rows of its automatic evaluation as sample answers.
export const SAMPLE_ROWS = 5;

export const sampleAnswersKey = (evaluationId: number, rowsDone: number) => ["evaluations", "results", evaluationId, "samples", rowsDone] as const;

export function listSampleAnswers(evaluationId: number): Promise<Page<EvalResult>> {
  return apiFetch<Page<EvalResult>>(`/api/v1/evaluations/${evaluationId}/results/`, { query: { page_size: SAMPLE_ROWS } });
}

/** rowsDone is part of the key, so the samples follow an evaluation that is still writing rows. */
export function useSampleAnswers(evaluationId: number, rowsDone: number) {
  return useQuery(queryOptions({ queryKey: sampleAnswersKey(evaluationId, rowsDone), queryFn: () => listSampleAnswers(evaluationId) }));
}
