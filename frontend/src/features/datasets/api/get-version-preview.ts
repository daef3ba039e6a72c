import { keepPreviousData, queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { VersionPreview } from "../../../api/types";

export interface PreviewParams {
  versionId: number;
  baseModel: string;
  page: number;
  /** Only rows from this document (metadata.source). */
  source?: string;
  /** Only rows about this fact (its fact_id or text): the knowledge recipe's questions of one fact. */
  fact?: string;
}

export const versionPreviewKey = (params: PreviewParams) => ["dataset-versions", "preview", params] as const;

export function getVersionPreview({ versionId, baseModel, page, source, fact }: PreviewParams): Promise<VersionPreview> {
  return apiFetch<VersionPreview>(`/api/v1/dataset-versions/${versionId}/preview/`, {
    query: { base_model: baseModel, page, page_size: 5, source: source || undefined, fact: fact || undefined },
  });
}

export const versionPreviewQueryOptions = (params: PreviewParams) =>
  queryOptions({
    queryKey: versionPreviewKey(params),
    queryFn: () => getVersionPreview(params),
    placeholderData: keepPreviousData,
    staleTime: Infinity, // versions are immutable
  });

export function useVersionPreview(params: PreviewParams, enabled: boolean) {
  return useQuery({ ...versionPreviewQueryOptions(params), enabled });
}
