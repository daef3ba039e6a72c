import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { DatasetVersion } from "../../../api/types";
import { isVersionBusy } from "../../../api/status";

export const versionsKey = (datasetId: number) => ["dataset-versions", { datasetId }] as const;

export function listVersions(datasetId: number): Promise<Page<DatasetVersion>> {
  return apiFetch<Page<DatasetVersion>>("/api/v1/dataset-versions/", { query: { dataset: datasetId, page_size: 200 } });
}

export const versionsQueryOptions = (datasetId: number) =>
  queryOptions({
    queryKey: versionsKey(datasetId),
    queryFn: () => listVersions(datasetId),
    // Poll while an import is still running; stop once every version settled.
    refetchInterval: (query) => (query.state.data?.results.some((v) => isVersionBusy(v.status)) ? 2000 : false),
  });

export function useVersions(datasetId: number) {
  return useQuery(versionsQueryOptions(datasetId));
}
