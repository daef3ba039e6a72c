import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { Export, ExportRequest } from "../../../api/types";

export const exportsKey = (projectId: number) => ["exports", { projectId }] as const;

export function listExports(projectId: number): Promise<Page<Export>> {
  return apiFetch<Page<Export>>("/api/v1/exports/", { query: { project: projectId, page_size: 200 } });
}

export const exportsQueryOptions = (projectId: number) =>
  queryOptions({
    queryKey: exportsKey(projectId),
    queryFn: () => listExports(projectId),
    refetchInterval: (query) => (query.state.data?.results.some((e) => e.status === "pending" || e.status === "running") ? 2000 : false),
  });

export function useExports(projectId: number) {
  return useQuery(exportsQueryOptions(projectId));
}

export function createExport(input: ExportRequest): Promise<Export> {
  return apiFetch<Export>("/api/v1/exports/", { method: "POST", json: input });
}

export function deleteExport(id: number): Promise<void> {
  return apiFetch<void>(`/api/v1/exports/${id}/`, { method: "DELETE" });
}

export function useCreateExport() {
  const queryClient = useQueryClient();
  return useMutation({ mutationFn: createExport, onSuccess: () => queryClient.invalidateQueries({ queryKey: ["exports"] }) });
}

export function useDeleteExport() {
  const queryClient = useQueryClient();
  return useMutation({ mutationFn: deleteExport, onSuccess: () => queryClient.invalidateQueries({ queryKey: ["exports"] }) });
}

export function exportDownloadUrl(id: number): string {
  return `/api/v1/exports/${id}/download/`;
}
