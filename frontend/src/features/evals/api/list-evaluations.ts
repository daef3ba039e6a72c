import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { Evaluation } from "../../../api/types";

export const evaluationsKey = (projectId: number) => ["evaluations", { projectId }] as const;

export const isEvaluationActive = (status: string) => status === "queued" || status === "running";

export function listEvaluations(projectId: number): Promise<Page<Evaluation>> {
  return apiFetch<Page<Evaluation>>("/api/v1/evaluations/", { query: { project: projectId, page_size: 100 } });
}

export const evaluationsQueryOptions = (projectId: number) =>
  queryOptions({
    queryKey: evaluationsKey(projectId),
    queryFn: () => listEvaluations(projectId),
    refetchInterval: (query) => (query.state.data?.results.some((e) => isEvaluationActive(e.status)) ? 2000 : false),
  });

export function useEvaluations(projectId: number) {
  return useQuery(evaluationsQueryOptions(projectId));
}
