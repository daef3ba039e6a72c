import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { DatasetVersion } from "../../../api/types";
import { versionsKey } from "./list-versions";

export interface GoogleImportInput {
  datasetId: number;
  connection: number;
  document_ids: string[];
  folder_id: string;
  recipe: string;
  note: string;
}

export function importGoogleDocs({ datasetId, connection, note, ...source }: GoogleImportInput): Promise<DatasetVersion> {
  return apiFetch<DatasetVersion>("/api/v1/dataset-versions/", {
    method: "POST",
    json: { dataset: datasetId, source_kind: "google_docs", connection, source_config: source, note },
  });
}

export function useImportGoogleDocs() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: importGoogleDocs,
    onSuccess: (_v, input) => queryClient.invalidateQueries({ queryKey: versionsKey(input.datasetId) }),
  });
}
