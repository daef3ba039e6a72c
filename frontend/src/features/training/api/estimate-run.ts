import { keepPreviousData, queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { RunEstimate, TrainingRunRequest } from "../../../api/types";

export const runEstimateKey = (input: TrainingRunRequest) => ["runs", "estimate", input] as const;

export function estimateRun(input: TrainingRunRequest): Promise<RunEstimate> {
  return apiFetch<RunEstimate>("/api/v1/runs/estimate/", { method: "POST", json: input });
}

export const runEstimateQueryOptions = (input: TrainingRunRequest) =>
  queryOptions({
    queryKey: runEstimateKey(input),
    queryFn: () => estimateRun(input),
    placeholderData: keepPreviousData,
    staleTime: 60_000,
    retry: false,
  });

export function useRunEstimate(input: TrainingRunRequest, enabled: boolean) {
  return useQuery({ ...runEstimateQueryOptions(input), enabled });
}
