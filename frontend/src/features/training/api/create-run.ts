import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { TrainingRun } from "../../../api/types";
import { runsKey } from "./list-runs";

export interface CreateRunInput {
  project: number;
  name: string;
  dataset_version: number;
  base_model: string;
  method: "lora" | "full";
  /** {"preset": ..., plus only the hyperparameters the user changed; the preset supplies the rest}. */
  config: Record<string, unknown>;
}

export function createRun(input: CreateRunInput): Promise<TrainingRun> {
  return apiFetch<TrainingRun>("/api/v1/runs/", { method: "POST", json: input });
}

export function useCreateRun() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createRun,
    onSuccess: (_run, input) => queryClient.invalidateQueries({ queryKey: runsKey(input.project) }),
  });
}
