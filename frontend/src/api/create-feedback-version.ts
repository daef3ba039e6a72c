import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "./client";
import type { DatasetVersion, FeedbackVersionRequest } from "./types";

/** A dataset version written from the team's feedback (pairs, unpaired or supervised rows). */
export function useCreateFeedbackVersion() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: FeedbackVersionRequest) =>
      apiFetch<DatasetVersion>("/api/v1/feedback/dataset-version/", { method: "POST", json: body }),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["dataset-versions"] }),
  });
}
