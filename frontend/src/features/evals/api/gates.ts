import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { Evaluation, Gate, GateCheckRequest, GateRequest } from "../../../api/types";

export const gatesKey = (projectId: number) => ["gates", { projectId }] as const;

export function listGates(projectId: number): Promise<Page<Gate>> {
  return apiFetch<Page<Gate>>("/api/v1/gates/", { query: { project: projectId } });
}

export const gatesQueryOptions = (projectId: number) => queryOptions({ queryKey: gatesKey(projectId), queryFn: () => listGates(projectId) });

export function useGate(projectId: number) {
  return useQuery({ ...gatesQueryOptions(projectId), select: (page) => page.results[0] ?? null });
}

export function setGate(input: GateRequest): Promise<Gate> {
  return apiFetch<Gate>("/api/v1/gates/", { method: "POST", json: input });
}

export function useSetGate() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: setGate,
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: ["gates"] });
      void queryClient.invalidateQueries({ queryKey: ["gate-status"] });
    },
  });
}

export function checkGate({ gateId, ...body }: GateCheckRequest & { gateId: number }): Promise<Evaluation> {
  return apiFetch<Evaluation>(`/api/v1/gates/${gateId}/check/`, { method: "POST", json: body });
}

export function useCheckGate() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: checkGate,
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: ["evaluations"] });
      void queryClient.invalidateQueries({ queryKey: ["gate-status"] });
    },
  });
}
