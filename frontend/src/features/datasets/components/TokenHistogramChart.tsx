import { Bar, BarChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { TokenHistogram } from "../../../api/types";
import { EmptyState } from "../../../components/States";
import { histogramBuckets } from "../version-status";

export function TokenHistogramChart({ histogram, maxLength }: { histogram: TokenHistogram | null | undefined; maxLength?: number }) {
  const buckets = histogramBuckets(histogram);
  if (!buckets.length) return <EmptyState title="No token statistics">They appear once validation finishes.</EmptyState>;
  return (
    <figure style={{ margin: 0 }}>
      <div style={{ width: "100%", height: 220 }}>
        <ResponsiveContainer>
          <BarChart data={buckets} margin={{ top: 8, right: 8, bottom: 8, left: 0 }}>
            <CartesianGrid strokeDasharray="3 3" stroke="var(--border)" vertical={false} />
            <XAxis dataKey="label" tick={{ fontSize: 11, fill: "var(--text-muted)" }} interval="preserveStartEnd" />
            <YAxis allowDecimals={false} tick={{ fontSize: 11, fill: "var(--text-muted)" }} width={40} />
            <Tooltip
              contentStyle={{ background: "var(--surface)", border: "1px solid var(--border)", color: "var(--text)" }}
              formatter={(value) => [value, "rows"]}
              labelFormatter={(label) => `${label} tokens`}
            />
            <Bar dataKey="count" fill="var(--chart-1)" isAnimationActive={false} />
          </BarChart>
        </ResponsiveContainer>
      </div>
      <figcaption className="small muted">
        Rows by token length{histogram?.p50 != null ? ` (median ${histogram.p50}, 95th percentile ${histogram.p95})` : ""}
        {maxLength ? `; the model's context is ${maxLength} tokens` : ""}.
      </figcaption>
      {/* The same numbers for screen readers and keyboard users. */}
      <table className="visually-hidden">
        <caption>Token length histogram</caption>
        <tbody>
          {buckets.map((b) => (
            <tr key={b.label}>
              <th>{b.label} tokens</th>
              <td>{b.count} rows</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
