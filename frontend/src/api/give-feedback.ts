import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "./client";
import type { Feedback, GiveFeedbackRequest } from "./types";

/** A rating, a correction or a choice between two answers, named by the completion ids the API returned. */
export function giveFeedback(body: GiveFeedbackRequest): Promise<Feedback> {
  return apiFetch<Feedback>("/api/v1/feedback/", { method: "POST", json: body });
}

export function useGiveFeedback() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: giveFeedback,
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["feedback-summary"] }),
  });
}
