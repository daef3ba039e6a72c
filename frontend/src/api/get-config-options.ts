import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "./client";
import type { TrainingOptions } from "./types";

export const configOptionsKey = ["runs", "config-options"] as const;

/** The engine's hyperparameters (type, default, choices, help) and presets resolved per method. */
export function getConfigOptions(): Promise<TrainingOptions> {
  return apiFetch<TrainingOptions>("/api/v1/runs/config-options/");
}

export const configOptionsQueryOptions = () =>
  // Fixed for the life of the server process.
  queryOptions({ queryKey: configOptionsKey, queryFn: getConfigOptions, staleTime: Infinity });

export function useConfigOptions() {
  return useQuery(configOptionsQueryOptions());
}
