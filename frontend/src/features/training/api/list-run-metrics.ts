import type { RunMetric } from "../../../api/types";
import { useTail } from "../../../api/tail";

export const runMetricsKey = (runId: number) => ["runs", "metrics", runId] as const;

export function useRunMetrics(runId: number, live: boolean) {
  return useTail<RunMetric>({ queryKey: runMetricsKey(runId), path: `/api/v1/runs/${runId}/metrics/`, live });
}
