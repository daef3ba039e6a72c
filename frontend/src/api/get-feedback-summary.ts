import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "./client";
import type { FeedbackSummary } from "./types";

export const feedbackSummaryKey = (deploymentId: number) => ["feedback-summary", { deploymentId }] as const;

/** How much feedback a deployment's answers have, and how many rows of each kind a version would hold. */
export const feedbackSummaryQueryOptions = (deploymentId: number) =>
  queryOptions({
    queryKey: feedbackSummaryKey(deploymentId),
    queryFn: () => apiFetch<FeedbackSummary>("/api/v1/feedback/summary/", { query: { deployment: deploymentId } }),
  });

export function useFeedbackSummary(deploymentId: number) {
  return useQuery(feedbackSummaryQueryOptions(deploymentId));
}
