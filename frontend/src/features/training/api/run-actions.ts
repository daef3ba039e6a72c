import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { TrainingRun } from "../../../api/types";
import { runKey } from "./get-run";

export function cancelRun(runId: number): Promise<TrainingRun> {
  return apiFetch<TrainingRun>(`/api/v1/runs/${runId}/cancel/`, { method: "POST" });
}

export function resumeRun(runId: number): Promise<TrainingRun> {
  return apiFetch<TrainingRun>(`/api/v1/runs/${runId}/resume/`, { method: "POST" });
}

function useRunAction(action: (runId: number) => Promise<TrainingRun>) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: action,
    onSuccess: (run, runId) => {
      if (run && typeof run === "object" && "id" in run) queryClient.setQueryData(runKey(runId), run);
      void queryClient.invalidateQueries({ queryKey: ["runs"] });
    },
  });
}

export const useCancelRun = () => useRunAction(cancelRun);
export const useResumeRun = () => useRunAction(resumeRun);
