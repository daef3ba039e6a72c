import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { EvalSet } from "./types";

export const evalSetsKey = (projectId: number) => ["eval-sets", { projectId }] as const;

export function listEvalSets(projectId: number): Promise<Page<EvalSet>> {
  return apiFetch<Page<EvalSet>>("/api/v1/eval-sets/", { query: { project: projectId, page_size: 200 } });
}

export const evalSetsQueryOptions = (projectId: number) =>
  queryOptions({ queryKey: evalSetsKey(projectId), queryFn: () => listEvalSets(projectId) });

export function useEvalSets(projectId: number) {
  return useQuery(evalSetsQueryOptions(projectId));
}
