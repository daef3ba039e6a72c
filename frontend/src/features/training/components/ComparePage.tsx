import { useQueries } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router";
import type { TrainingRun } from "../../../api/types";
import { StatusBadge } from "../../../components/Badge";
import { Card, PageHeader } from "../../../components/Card";
import { EmptyState, ErrorState, LoadingState } from "../../../components/States";
import { formatMetric } from "../../../lib/format";
import { useProjectId } from "../../projects/use-project-id";
import { useRunCompare } from "../api/compare-runs";
import { MetricChart } from "./MetricChart";
import { runQueryOptions } from "../api/get-run";

const COLORS = ["var(--chart-1)", "var(--chart-2)", "var(--chart-3)", "var(--chart-4)", "var(--chart-5)"];

function flatten(config: Record<string, unknown>, prefix = ""): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(config ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) Object.assign(out, flatten(value as Record<string, unknown>, name));
    else out[name] = JSON.stringify(value);
  }
  return out;
}

export function ComparePage() {
  const projectId = useProjectId();
  const [params] = useSearchParams();
  const ids = (params.get("ids") ?? "").split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0);
  const runs = useQueries({ queries: ids.map((id) => runQueryOptions(id)) });
  const compare = useRunCompare(ids);
  if (ids.length < 2) {
    return (
      <Card>
        <EmptyState title="Pick at least two runs" action={<Link to={`/projects/${projectId}/runs`}>Back to runs</Link>}>
          Tick runs in the list, then press Compare.
        </EmptyState>
      </Card>
    );
  }
  if (runs.some((r) => r.isPending) || compare.isPending) return <LoadingState label="Loading runs…" />;
  const failed = runs.find((r) => r.isError);
  if (failed) return <ErrorState error={failed.error} />;
  if (compare.isError) return <ErrorState error={compare.error} onRetry={() => void compare.refetch()} />;
  const loaded = runs.map((r) => r.data).filter((r): r is TrainingRun => Boolean(r));
  const series = loaded.map((run, i) => ({ key: `run${run.id}`, label: run.name, color: COLORS[i % COLORS.length]! }));
  const configs = loaded.map((run) => flatten({ base_model: run.base_model, method: run.method, ...run.config }));
  const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))].sort();
  const differs = (key: string) => new Set(configs.map((c) => c[key])).size > 1;
  return (
    <>
      <PageHeader breadcrumbs={<Link to={`/projects/${projectId}/runs`}>Training runs</Link>} title="Compare runs" description={loaded.map((r) => r.name).join(" vs ")} />
      <div className="stack">
        <div className="grid-2">
          <Card title="Train loss">
            <MetricChart title="Train loss" rows={compare.data.rows("loss")} series={series} />
          </Card>
          <Card title="Eval loss">
            <MetricChart title="Eval loss" rows={compare.data.rows("eval_loss")} series={series} />
          </Card>
        </div>
        <Card title="Configuration side by side" bodyClassName="">
          <div className="table-wrap">
            <table className="table">
              <thead>
                <tr>
                  <th>Setting</th>
                  {loaded.map((r) => (
                    <th key={r.id}>
                      <Link to={`/projects/${projectId}/runs/${r.id}`}>{r.name}</Link> <StatusBadge status={r.status} />
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                <tr>
                  <td>final eval loss</td>
                  {loaded.map((r) => (
                    <td key={r.id} className="mono">
                      {formatMetric(r.summary_metrics?.eval_loss)}
                    </td>
                  ))}
                </tr>
                {keys.map((key) => (
                  <tr key={key} style={differs(key) ? { background: "var(--warning-soft)" } : undefined}>
                    <td className="mono">{key}</td>
                    {configs.map((c, i) => (
                      <td key={i} className="mono small">
                        {c[key] ?? "—"}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <p className="small muted card-body" style={{ margin: 0 }}>
            Highlighted rows differ between runs.
          </p>
        </Card>
      </div>
    </>
  );
}
