import { useMutation, useQueryClient } from "@tanstack/react-query";
import { uploadWithProgress, type UploadProgress } from "../../../api/client";
import type { DatasetVersion, UploadRequest } from "../../../api/types";

export interface UploadInput extends UploadRequest {
  datasetId: number;
  onProgress: (progress: UploadProgress) => void;
  signal?: AbortSignal;
}

/** Uploads files as one new version of the dataset; ingestion continues as a job. */
export function uploadFiles({ datasetId, files, note, options, onProgress, signal }: UploadInput): Promise<DatasetVersion> {
  const form = new FormData();
  files.forEach((file) => form.append("files", file, file.name));
  if (note) form.append("note", note);
  if (options) form.append("options", JSON.stringify(options));
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
