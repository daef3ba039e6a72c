import type { RunMetric, TrainingRun } from "../../api/types";

export function runProgress(run: Pick<TrainingRun, "progress_step" | "progress_total" | "status">): number {
  if (run.status === "succeeded") return 1;
  if (!run.progress_total) return 0;
  return run.progress_step / run.progress_total;
}

export interface CurvePoint {
  step: number;
  [metric: string]: number;
}

/** Metric points as chart rows: one row per step with a column per metric name. */
export function curveRows(metrics: RunMetric[], names: string[]): CurvePoint[] {
  const byStep = new Map<number, CurvePoint>();
  for (const m of metrics) {
    if (!names.includes(m.name)) continue;
    const row = byStep.get(m.step) ?? { step: m.step };
    row[m.name] = m.value;
    byStep.set(m.step, row);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

export function latestValue(metrics: RunMetric[], name: string): number | undefined {
  for (let i = metrics.length - 1; i >= 0; i -= 1) {
    const m = metrics[i];
    if (m && m.name === name) return m.value;
  }
  return undefined;
}
