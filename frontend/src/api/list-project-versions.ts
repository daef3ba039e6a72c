import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { DatasetVersion } from "./types";
import { isVersionBusy } from "./status";

export const projectVersionsKey = (projectId: number) => ["dataset-versions", { projectId }] as const;

/** Every version in the project: what the new-run form offers to train on. */
export function listProjectVersions(projectId: number): Promise<Page<DatasetVersion>> {
  return apiFetch<Page<DatasetVersion>>("/api/v1/dataset-versions/", { query: { project: projectId, page_size: 200 } });
}

export const projectVersionsQueryOptions = (projectId: number) =>
  queryOptions({
    queryKey: projectVersionsKey(projectId),
    queryFn: () => listProjectVersions(projectId),
    // Statuses change on the server (an import finishing): read afresh whenever a page opens.
    refetchOnMount: "always",
    // A version importing right now turns ready (or failed) within seconds.
    refetchInterval: (query) => (query.state.data?.results.some((v) => isVersionBusy(v.status)) ? 2000 : false),
  });

export function useProjectVersions(projectId: number) {
  return useQuery(projectVersionsQueryOptions(projectId));
}
