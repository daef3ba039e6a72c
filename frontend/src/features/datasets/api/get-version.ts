import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { DatasetVersion } from "../../../api/types";
import { isVersionBusy } from "../../../api/status";

export const versionKey = (versionId: number) => ["dataset-versions", "detail", versionId] as const;

export function getVersion(versionId: number): Promise<DatasetVersion> {
  return apiFetch<DatasetVersion>(`/api/v1/dataset-versions/${versionId}/`);
}

export const versionQueryOptions = (versionId: number) =>
  queryOptions({
    queryKey: versionKey(versionId),
    queryFn: () => getVersion(versionId),
    refetchInterval: (query) => (query.state.data && isVersionBusy(query.state.data.status) ? 1500 : false),
  });

export function useVersion(versionId: number) {
  return useQuery(versionQueryOptions(versionId));
}

export function versionDownloadUrl(versionId: number): string {
  return `/api/v1/dataset-versions/${versionId}/download/`;
}
