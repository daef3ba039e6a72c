import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";

/** The compare endpoint: each run's metric points aligned by step. */
export interface RunCompareResponse {
  runs: { id: number; name: string; config?: Record<string, unknown>; metrics: Record<string, [number, number][] | { step: number; value: number }[]> }[];
}

export interface RunCompare {
  /** Chart rows for one metric: {step, run<ID>: value, ...}. */
  rows: (metric: string) => Record<string, number>[];
}

export function toCompare(data: RunCompareResponse): RunCompare {
  return {
    rows: (metric) => {
      const byStep = new Map<number, Record<string, number>>();
      for (const run of data.runs) {
        for (const point of run.metrics?.[metric] ?? []) {
          const [step, value] = Array.isArray(point) ? point : [point.step, point.value];
          const row = byStep.get(step) ?? { step };
          row[`run${run.id}`] = value;
          byStep.set(step, row);
        }
      }
      return [...byStep.values()].sort((a, b) => (a.step ?? 0) - (b.step ?? 0));
    },
  };
}

export const runCompareKey = (ids: number[]) => ["runs", "compare", ids] as const;

export async function compareRuns(ids: number[]): Promise<RunCompare> {
  return toCompare(await apiFetch<RunCompareResponse>("/api/v1/runs/compare/", { query: { ids: ids.join(",") } }));
}

export const runCompareQueryOptions = (ids: number[]) =>
  queryOptions({ queryKey: runCompareKey(ids), queryFn: () => compareRuns(ids), refetchInterval: 5000 });

export function useRunCompare(ids: number[]) {
  return useQuery({ ...runCompareQueryOptions(ids), enabled: ids.length >= 2 });
}
