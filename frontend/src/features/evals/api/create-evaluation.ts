import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Evaluation, EvaluationRequest } from "../../../api/types";

export function createEvaluation(input: EvaluationRequest): Promise<Evaluation> {
  return apiFetch<Evaluation>("/api/v1/evaluations/", { method: "POST", json: input });
}

export function useCreateEvaluation() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createEvaluation,
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["evaluations"] }),
  });
}
