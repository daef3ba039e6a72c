import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { Checkpoint } from "./types";

export const checkpointsKey = (runId: number) => ["checkpoints", { runId }] as const;

export async function listCheckpoints(runId: number): Promise<Checkpoint[]> {
  const page = await apiFetch<Page<Checkpoint>>("/api/v1/checkpoints/", { query: { run: runId, ordering: "step", page_size: 500 } });
  return page.results;
}

export const checkpointsQueryOptions = (runId: number, live: boolean) =>
  queryOptions({ queryKey: checkpointsKey(runId), queryFn: () => listCheckpoints(runId), refetchInterval: live ? 5000 : false });

export function useCheckpoints(runId: number, live: boolean) {
  return useQuery(checkpointsQueryOptions(runId, live));
}
