import { Bar, BarChart, CartesianGrid, ErrorBar, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { EvaluationSummary } from "../../../api/types";
import { EmptyState } from "../../../components/States";

const COLORS = ["var(--chart-1)", "var(--chart-2)", "var(--chart-3)", "var(--chart-4)"];

/** One group of bars per score, one bar per target, each with its 95% bootstrap interval. */
export function ScoresChart({ summary, labels }: { summary: EvaluationSummary; labels: string[] }) {
  const targets = summary.targets ?? {};
  const keys = Object.keys(targets[labels[0] ?? ""]?.scores ?? {});
  const rows = keys.map((key) => {
    const row: Record<string, unknown> = { key };
    labels.forEach((label, i) => {
      const score = targets[label]?.scores[key];
      if (score?.mean == null) return;
      // The judge scores 1-5; the others 0-1: the chart shows both on 0-1.
      const scale = key === "judge" ? (v: number) => (v - 1) / 4 : (v: number) => v;
      row[`t${i}`] = scale(score.mean);
      row[`e${i}`] = [scale(score.mean) - scale(score.low ?? score.mean), scale(score.high ?? score.mean) - scale(score.mean)];
    });
    return row;
  });
  if (!rows.length) return <EmptyState title="No scores yet" />;
  return (
    <div className="chart" role="img" aria-label="Mean score per target with 95% intervals">
      <ResponsiveContainer width="100%" height={280}>
        <BarChart data={rows} margin={{ top: 8, right: 16, left: 0, bottom: 0 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} />
          <XAxis dataKey="key" />
          <YAxis domain={[0, 1]} />
          <Tooltip formatter={(value) => (typeof value === "number" ? value.toFixed(3) : String(value))} />
          <Legend />
          {labels.map((label, i) => (
            <Bar key={label} dataKey={`t${i}`} name={label} fill={COLORS[i % COLORS.length]} isAnimationActive={false}>
              <ErrorBar dataKey={`e${i}`} width={4} strokeWidth={1.5} stroke="var(--text)" />
            </Bar>
          ))}
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}
