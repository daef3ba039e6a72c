import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { Card } from "../../../components/Card";
import { EmptyState } from "../../../components/States";
import { formatMetric } from "../../../lib/format";

export interface Series {
  key: string;
  label: string;
  color: string;
}

interface MetricChartProps {
  title: string;
  rows: Record<string, number>[];
  series: Series[];
  height?: number;
  scale?: "linear" | "log";
}

/** A card of its own for one chart, under the chart's title (the run and compare pages' grids). */
export function MetricCard(props: MetricChartProps) {
  return (
    <Card title={props.title}>
      <MetricChart {...props} />
    </Card>
  );
}

/** A line chart of metric curves against the training step, with a table for screen readers. */
export function MetricChart({ title, rows, series, height = 220, scale = "linear" }: MetricChartProps) {
  const present = series.filter((s) => rows.some((r) => r[s.key] !== undefined));
  return (
    <figure style={{ margin: 0 }} aria-label={title} data-testid={`chart-${title}`}>
      {present.length === 0 ? (
        <EmptyState title={`No ${title.toLowerCase()} yet`}>Points appear as the worker reports them.</EmptyState>
      ) : (
        <div style={{ width: "100%", height }}>
          <ResponsiveContainer>
            <LineChart data={rows} margin={{ top: 8, right: 12, bottom: 4, left: 0 }}>
              <CartesianGrid strokeDasharray="3 3" stroke="var(--border)" />
              <XAxis dataKey="step" type="number" allowDecimals={false} domain={["dataMin", "dataMax"]} tick={{ fontSize: 11, fill: "var(--text-muted)" }} />
              <YAxis
                scale={scale}
                domain={["auto", "auto"]}
                tickFormatter={(v: number) => formatMetric(v)}
                tick={{ fontSize: 11, fill: "var(--text-muted)" }}
                width={56}
                allowDataOverflow
              />
              <Tooltip
                contentStyle={{ background: "var(--surface)", border: "1px solid var(--border)", color: "var(--text)" }}
                labelFormatter={(step) => `step ${step}`}
                formatter={(value) => formatMetric(typeof value === "number" ? value : Number(value))}
              />
              {present.length > 1 ? <Legend wrapperStyle={{ fontSize: 12 }} /> : null}
              {present.map((s) => (
                <Line
                  key={s.key}
                  dataKey={s.key}
                  name={s.label}
                  stroke={s.color}
                  dot={rows.length < 30}
                  strokeWidth={2}
                  connectNulls
                  isAnimationActive={false}
                />
              ))}
            </LineChart>
          </ResponsiveContainer>
        </div>
      )}
      <figcaption className="visually-hidden">
        {title}:{" "}
        {present
          .map((s) => {
            const last = [...rows].reverse().find((r) => r[s.key] !== undefined);
            return last ? `${s.label} ${formatMetric(last[s.key])} at step ${last.step}` : "";
          })
          .join("; ")}
      </figcaption>
    </figure>
  );
}
