import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { ConnectionProbeRequest, ConnectionTestResult, DatasetVersion, DatasetVersionRequest, QueryPreview } from "../../../api/types";
import { versionsKey } from "./list-versions";

export function testConnection(connectionId: number): Promise<ConnectionTestResult> {
  return apiFetch<ConnectionTestResult>(`/api/v1/connections/${connectionId}/test/`, {
    method: "POST",
    json: { limit: 1 } satisfies ConnectionProbeRequest,
  });
}

export function previewQuery({ connectionId, query }: { connectionId: number; query: string }): Promise<QueryPreview> {
  return apiFetch<QueryPreview>(`/api/v1/connections/${connectionId}/preview/`, {
    method: "POST",
    json: { query, limit: 20 } satisfies ConnectionProbeRequest,
  });
}

/** A SQL import is a new version whose source is the connection plus the query and mapping. */
export function importSql(input: Omit<DatasetVersionRequest<"sql">, "source_kind">): Promise<DatasetVersion> {
  return apiFetch<DatasetVersion>("/api/v1/dataset-versions/", { method: "POST", json: { ...input, source_kind: "sql" } });
}

export function useTestConnection() {
  return useMutation({ mutationFn: testConnection });
}

export function usePreviewQuery() {
  return useMutation({ mutationFn: previewQuery });
}

export function useImportSql() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: importSql,
    onSuccess: (_v, input) => queryClient.invalidateQueries({ queryKey: versionsKey(input.dataset) }),
  });
}
