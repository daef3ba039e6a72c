import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { Dataset } from "./types";

export const datasetsKey = (projectId: number) => ["datasets", { projectId }] as const;

export function listDatasets(projectId: number): Promise<Page<Dataset>> {
  return apiFetch<Page<Dataset>>("/api/v1/datasets/", { query: { project: projectId, page_size: 200 } });
}

export const datasetsQueryOptions = (projectId: number) =>
  queryOptions({ queryKey: datasetsKey(projectId), queryFn: () => listDatasets(projectId) });

export function useDatasets(projectId: number) {
  return useQuery(datasetsQueryOptions(projectId));
}
