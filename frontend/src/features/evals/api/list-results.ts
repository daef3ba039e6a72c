import { keepPreviousData, queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { EvalResult } from "../../../api/types";

export interface ResultFilters {
  regressions: boolean;
  disagreements: boolean;
  tag: string;
  page: number;
}

export const resultsKey = (id: number, filters: ResultFilters, rowsDone: number) =>
  ["evaluations", "results", id, filters, rowsDone] as const;

export function listResults(id: number, { regressions, disagreements, tag, page }: ResultFilters): Promise<Page<EvalResult>> {
  return apiFetch<Page<EvalResult>>(`/api/v1/evaluations/${id}/results/`, {
    query: { regressions: regressions || undefined, disagreements: disagreements || undefined, tag: tag || undefined, page, page_size: 25 },
  });
}

/** rowsDone is part of the key, so the table follows an evaluation that is still writing rows. */
export const resultsQueryOptions = (id: number, filters: ResultFilters, rowsDone: number) =>
  queryOptions({ queryKey: resultsKey(id, filters, rowsDone), queryFn: () => listResults(id, filters), placeholderData: keepPreviousData });

export function useResults(id: number, filters: ResultFilters, rowsDone: number) {
  return useQuery(resultsQueryOptions(id, filters, rowsDone));
}
