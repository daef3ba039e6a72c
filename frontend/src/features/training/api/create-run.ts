import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { TrainingRun, TrainingRunRequest } from "../../../api/types";
import { runsKey } from "../../../api/list-runs";

export function createRun(input: TrainingRunRequest): Promise<TrainingRun> {
  return apiFetch<TrainingRun>("/api/v1/runs/", { method: "POST", json: input });
}

export function useCreateRun() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createRun,
    onSuccess: (_run, input) => queryClient.invalidateQueries({ queryKey: runsKey(input.project) }),
  });
}
