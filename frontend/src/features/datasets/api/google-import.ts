import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { DatasetVersion, DatasetVersionRequest } from "../../../api/types";
import { versionsKey } from "./list-versions";

export function importGoogleDocs(input: Omit<DatasetVersionRequest<"google_docs">, "source_kind">): Promise<DatasetVersion> {
  return apiFetch<DatasetVersion>("/api/v1/dataset-versions/", { method: "POST", json: { ...input, source_kind: "google_docs" } });
}

export function useImportGoogleDocs() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: importGoogleDocs,
    onSuccess: (_v, input) => queryClient.invalidateQueries({ queryKey: versionsKey(input.dataset) }),
  });
}
