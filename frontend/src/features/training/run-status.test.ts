import type { RunMetric } from "../../api/types";
import { curveRows, latestValue, runProgress } from "./run-status";

const point = (id: number, step: number, name: string, value: number): RunMetric => ({ id, step, name, value, created_at: "" });

describe("curves", () => {
  it("puts train and eval loss of the same step on one chart row", () => {
    const rows = curveRows([point(1, 10, "loss", 2.5), point(2, 10, "eval_loss", 2.7), point(3, 20, "loss", 2.1), point(4, 20, "learning_rate", 1e-4)], ["loss", "eval_loss"]);
    expect(rows).toEqual([
      { step: 10, loss: 2.5, eval_loss: 2.7 },
      { step: 20, loss: 2.1 },
    ]);
  });

  it("finds the newest value of a metric", () => {
    expect(latestValue([point(1, 1, "loss", 3), point(2, 2, "loss", 2)], "loss")).toBe(2);
    expect(latestValue([], "loss")).toBeUndefined();
  });

  it("reports progress from steps, and full progress once succeeded", () => {
    expect(runProgress({ status: "running", progress_step: 5, progress_total: 20 })).toBe(0.25);
    expect(runProgress({ status: "succeeded", progress_step: 5, progress_total: 20 })).toBe(1);
    expect(runProgress({ status: "queued", progress_step: 0, progress_total: null })).toBe(0);
  });
});
