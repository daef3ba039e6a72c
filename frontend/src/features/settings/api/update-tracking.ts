import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { TeamTracking, TeamTrackingRequest } from "../../../api/types";
import { trackingKey } from "./get-tracking";

/** Secrets left out of `input` stay as they are; "" removes one. */
export function updateTracking(teamId: number, input: Partial<TeamTrackingRequest>): Promise<TeamTracking> {
  return apiFetch<TeamTracking>(`/api/v1/tracking-settings/${teamId}/`, { method: "PUT", json: input });
}

export function useUpdateTracking(teamId: number) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: Partial<TeamTrackingRequest>) => updateTracking(teamId, input),
    onSuccess: (saved) => queryClient.setQueryData(trackingKey(teamId), saved),
  });
}
