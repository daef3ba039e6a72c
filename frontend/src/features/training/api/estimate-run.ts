import { keepPreviousData, queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { RunEstimate } from "../../../api/types";
import type { CreateRunInput } from "./create-run";

export const runEstimateKey = (input: CreateRunInput) => ["runs", "estimate", input] as const;

export function estimateRun(input: CreateRunInput): Promise<RunEstimate> {
  return apiFetch<RunEstimate>("/api/v1/runs/estimate/", { method: "POST", json: input });
}

export const runEstimateQueryOptions = (input: CreateRunInput) =>
  queryOptions({
    queryKey: runEstimateKey(input),
    queryFn: () => estimateRun(input),
    placeholderData: keepPreviousData,
    staleTime: 60_000,
    retry: false,
  });

export function useRunEstimate(input: CreateRunInput, enabled: boolean) {
  return useQuery({ ...runEstimateQueryOptions(input), enabled });
}
