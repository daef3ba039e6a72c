import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Dataset } from "../../../api/types";

export const datasetKey = (datasetId: number) => ["datasets", "detail", datasetId] as const;

export function getDataset(datasetId: number): Promise<Dataset> {
  return apiFetch<Dataset>(`/api/v1/datasets/${datasetId}/`);
}

export const datasetQueryOptions = (datasetId: number) =>
  queryOptions({ queryKey: datasetKey(datasetId), queryFn: () => getDataset(datasetId) });

export function useDataset(datasetId: number) {
  return useQuery(datasetQueryOptions(datasetId));
}
