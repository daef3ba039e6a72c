import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Deployment, Precision } from "../../../api/types";

/** Undeploy: the model leaves the inference service; the deployment stays listed as stopped. */
export function stopDeployment(id: number): Promise<Deployment> {
  return apiFetch<Deployment>(`/api/v1/deployments/${id}/stop/`, { method: "POST" });
}

export function startDeployment(id: number): Promise<Deployment> {
  return apiFetch<Deployment>(`/api/v1/deployments/${id}/start/`, { method: "POST" });
}

/** A new precision: the inference service reloads the deployment in it. */
export function setDeploymentPrecision({ id, precision }: { id: number; precision: Precision }): Promise<Deployment> {
  return apiFetch<Deployment>(`/api/v1/deployments/${id}/`, { method: "PATCH", json: { precision } });
}

export function deleteDeployment(id: number): Promise<void> {
  return apiFetch<void>(`/api/v1/deployments/${id}/`, { method: "DELETE" });
}

function useDeploymentAction<A, T>(action: (arg: A) => Promise<T>) {
  const queryClient = useQueryClient();
  return useMutation({ mutationFn: action, onSuccess: () => queryClient.invalidateQueries({ queryKey: ["deployments"] }) });
}

export const useStopDeployment = () => useDeploymentAction(stopDeployment);
export const useStartDeployment = () => useDeploymentAction(startDeployment);
export const useDeleteDeployment = () => useDeploymentAction(deleteDeployment);
export const useSetDeploymentPrecision = () => useDeploymentAction(setDeploymentPrecision);
