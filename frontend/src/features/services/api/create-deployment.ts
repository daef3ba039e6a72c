import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Deployment, Runtime } from "../../../api/types";

export interface CreateDeploymentInput {
  name: string;
  run: number;
  checkpoint: number | null;
  runtime: Runtime;
  merge_adapter: boolean;
}

export function createDeployment(input: CreateDeploymentInput): Promise<Deployment> {
  return apiFetch<Deployment>("/api/v1/deployments/", { method: "POST", json: input });
}

export function useCreateDeployment() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createDeployment,
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["deployments"] }),
  });
}
