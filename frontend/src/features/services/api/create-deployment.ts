import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Deployment, DeploymentRequest } from "../../../api/types";

export function createDeployment(input: DeploymentRequest): Promise<Deployment> {
  return apiFetch<Deployment>("/api/v1/deployments/", { method: "POST", json: input });
}

export function useCreateDeployment() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createDeployment,
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["deployments"] }),
  });
}
