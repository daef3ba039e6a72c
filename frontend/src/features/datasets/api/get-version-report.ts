import { keepPreviousData, queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { ValidationReport } from "../../../api/types";

export const versionReportKey = (versionId: number, baseModel: string) => ["dataset-versions", "report", versionId, baseModel] as const;

/** The version's validation report with every row measured by `baseModel`'s tokenizer and chat template. */
export function getVersionReport(versionId: number, baseModel: string): Promise<ValidationReport> {
  return apiFetch<ValidationReport>(`/api/v1/dataset-versions/${versionId}/report/`, { query: { base_model: baseModel } });
}

export const versionReportQueryOptions = (versionId: number, baseModel: string) =>
  queryOptions({
    queryKey: versionReportKey(versionId, baseModel),
    queryFn: () => getVersionReport(versionId, baseModel),
    placeholderData: keepPreviousData,
    staleTime: Infinity, // versions are immutable, and the server keeps each model's report
  });

export function useVersionReport(versionId: number, baseModel: string, enabled: boolean) {
  return useQuery({ ...versionReportQueryOptions(versionId, baseModel), enabled });
}
