import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { CursorPage, RunMetric } from "../../../api/types";

export interface RunCompare {
  /** Chart rows for one metric, aligned by step: {step, run<ID>: value, ...}. */
  rows: (metric: string) => Record<string, number>[];
}

export async function allRunMetrics(runId: number, signal?: AbortSignal): Promise<RunMetric[]> {
  const points: RunMetric[] = [];
  let after = 0;
  for (let page = 0; page < 100; page += 1) {
    const data = await apiFetch<CursorPage<RunMetric>>(`/api/v1/runs/${runId}/metrics/`, { query: { after: after || undefined, limit: 1000 }, signal });
    points.push(...data.results);
    after = data.next_after;
    if (!data.has_more) break;
  }
  return points;
}

export function alignByStep(metricsByRun: Map<number, RunMetric[]>): RunCompare {
  return {
    rows: (metric) => {
      const byStep = new Map<number, Record<string, number>>();
      for (const [runId, points] of metricsByRun) {
        for (const point of points) {
          if (point.name !== metric) continue;
          const row = byStep.get(point.step) ?? { step: point.step };
          row[`run${runId}`] = point.value;
          byStep.set(point.step, row);
        }
      }
      return [...byStep.values()].sort((a, b) => (a.step ?? 0) - (b.step ?? 0));
    },
  };
}

export const runCompareKey = (ids: number[]) => ["runs", "compare", ids] as const;

export async function compareRuns(ids: number[], signal?: AbortSignal): Promise<RunCompare> {
  const all = await Promise.all(ids.map(async (id) => [id, await allRunMetrics(id, signal)] as const));
  return alignByStep(new Map(all));
}

export const runCompareQueryOptions = (ids: number[]) =>
  queryOptions({ queryKey: runCompareKey(ids), queryFn: ({ signal }) => compareRuns(ids, signal), refetchInterval: 5000 });

export function useRunCompare(ids: number[]) {
  return useQuery({ ...runCompareQueryOptions(ids), enabled: ids.length >= 2 });
}
