import { useMutation, useQueryClient } from "@tanstack/react-query";
import { uploadWithProgress, type UploadProgress } from "../../../api/client";
import type { DatasetVersion } from "../../../api/types";

export interface UploadInput {
  datasetId: number;
  files: File[];
  note: string;
  /** Recipe for plain documents: "text", "sections" or "qa". */
  recipe: string;
  onProgress: (progress: UploadProgress) => void;
  signal?: AbortSignal;
}

/** Uploads files as one new version of the dataset; ingestion continues as a job. */
export function uploadFiles({ datasetId, files, note, recipe, onProgress, signal }: UploadInput): Promise<DatasetVersion> {
  const form = new FormData();
  files.forEach((file) => form.append("files", file, file.name));
  if (note) form.append("note", note);
  form.append("options", JSON.stringify({ recipe }));
  return uploadWithProgress<DatasetVersion>(`/api/v1/datasets/${datasetId}/upload/`, form, onProgress, signal);
}

export function useUploadFiles() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: uploadFiles,
    // The dataset's versions and the project's (the new-run form's choices).
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["dataset-versions"] }),
  });
}
