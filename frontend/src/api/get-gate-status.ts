import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "./client";
import type { GateStatus } from "./types";

// Shared: the run page and the Deploy dialog both show whether a run passes its project's gate.
export const gateStatusKey = (runId: number) => ["gate-status", runId] as const;

export function getGateStatus(runId: number): Promise<GateStatus> {
  return apiFetch<GateStatus>("/api/v1/evaluations/gate-status/", { query: { run: runId } });
}

export const gateStatusQueryOptions = (runId: number) =>
  queryOptions({
    queryKey: gateStatusKey(runId),
    queryFn: () => getGateStatus(runId),
    refetchInterval: (query) => (query.state.data?.state === "pending" ? 3000 : false),
  });

export function useGateStatus(runId: number, enabled = true) {
  return useQuery({ ...gateStatusQueryOptions(runId), enabled: enabled && runId > 0 });
}
