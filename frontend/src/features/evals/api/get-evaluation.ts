import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Evaluation } from "../../../api/types";
import { isEvaluationActive } from "./list-evaluations";

export const evaluationKey = (id: number) => ["evaluations", "detail", id] as const;

export function getEvaluation(id: number): Promise<Evaluation> {
  return apiFetch<Evaluation>(`/api/v1/evaluations/${id}/`);
}

export const evaluationQueryOptions = (id: number) =>
  queryOptions({
    queryKey: evaluationKey(id),
    queryFn: () => getEvaluation(id),
    refetchInterval: (query) => (query.state.data && isEvaluationActive(query.state.data.status) ? 2000 : false),
  });

export function useEvaluation(id: number) {
  return useQuery(evaluationQueryOptions(id));
}
