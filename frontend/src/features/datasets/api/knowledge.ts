import { useMutation, useQuery } from "@tanstack/react-query";
import { apiFetch, uploadWithProgress } from "../../../api/client";
import type { KnowledgeOptionsInfo, KnowledgePreviewRequest, KnowledgePreviewResult } from "../../../api/types";

/** The teachers this platform may call for the knowledge recipe, its default prompts and knobs. */
export function useKnowledgeOptions(enabled: boolean) {
  return useQuery({
    queryKey: ["datasets", "knowledge-options"],
    queryFn: () => apiFetch<KnowledgeOptionsInfo>("/api/v1/datasets/knowledge-options/"),
    enabled,
    staleTime: Infinity,
  });
}

export type KnowledgePreviewInput = KnowledgePreviewRequest & { datasetId: number };

/** A dry run of the knowledge recipe on the first chunks of the files: nothing is saved. */
export function useKnowledgePreview() {
  return useMutation({
    mutationFn: ({ datasetId, files, options, chunks }: KnowledgePreviewInput) => {
      const form = new FormData();
      files.forEach((file) => form.append("files", file, file.name));
      form.append("options", JSON.stringify(options));
      form.append("chunks", String(chunks));
      return uploadWithProgress<KnowledgePreviewResult>(`/api/v1/datasets/${datasetId}/knowledge-preview/`, form, () => {});
    },
  });
}
