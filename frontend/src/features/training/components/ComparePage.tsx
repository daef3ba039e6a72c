import { Link, useSearchParams } from "react-router";
import { StatusBadge } from "../../../components/Badge";
import { Card, PageHeader } from "../../../components/Card";
import { EmptyState, ErrorState, LoadingState } from "../../../components/States";
import { formatMetric } from "../../../lib/format";
import { useProjectId } from "../../../lib/use-project-id";
import { useRunCompare } from "../api/compare-runs";
import { MetricCard } from "./MetricChart";

const COLORS = ["var(--chart-1)", "var(--chart-2)", "var(--chart-3)", "var(--chart-4)", "var(--chart-5)"];
const CHARTS = [
  { metric: "loss", title: "Train loss" },
  { metric: "eval_loss", title: "Eval loss" },
  { metric: "learning_rate", title: "Learning rate" },
  { metric: "tokens_per_second", title: "Tokens per second" },
];

function shown(value: unknown): string {
  return value === undefined ? "—" : typeof value === "string" ? value : JSON.stringify(value);
}

export function ComparePage() {
  const projectId = useProjectId();
  const [params] = useSearchParams();
  const ids = (params.get("ids") ?? "").split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0);
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
  if (compare.isPending) return <LoadingState label="Loading runs…" />;
  if (compare.isError) return <ErrorState error={compare.error} onRetry={() => void compare.refetch()} />;
  const { runs, metrics, config_keys: keys, config_differences: differences } = compare.data;
  // The API keys each run's column by its id.
  const series = runs.map((run, i) => ({ key: String(run.id), label: run.name, color: COLORS[i % COLORS.length]! }));
  return (
    <>
      <PageHeader breadcrumbs={<Link to={`/projects/${projectId}/runs`}>Training runs</Link>} title="Compare runs" description={runs.map((r) => r.name).join(" vs ")} />
      <div className="stack">
        <div className="grid-2">
          {CHARTS.map(({ metric, title }) => (
            <MetricCard key={metric} title={title} rows={metrics[metric] ?? []} series={series} />
          ))}
        </div>
        <Card title="Configuration side by side" bodyClassName="">
          <div className="table-wrap">
            <table className="table">
              <thead>
                <tr>
                  <th>Setting</th>
                  {runs.map((r) => (
                    <th key={r.id}>
                      <Link to={`/projects/${projectId}/runs/${r.id}`}>{r.name}</Link> <StatusBadge status={r.status} />
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                <tr>
                  <td>final eval loss</td>
                  {runs.map((r) => (
                    <td key={r.id} className="mono">
                      {formatMetric(r.summary_metrics?.eval_loss)}
                    </td>
                  ))}
                </tr>
                {keys.map((key) => (
                  <tr key={key} className={differences.includes(key) ? "row-differs" : undefined}>
                    <td className="mono">
                      {key}
                      {differences.includes(key) ? <span className="visually-hidden"> (differs)</span> : null}
                    </td>
                    {runs.map((r) => (
                      <td key={r.id} className="mono small">
                        {shown(r.config[key])}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <p className="small muted card-body" style={{ margin: 0 }}>
            {differences.length ? `Highlighted rows differ between runs: ${differences.join(", ")}.` : "The runs have the same configuration."}
          </p>
        </Card>
      </div>
    </>
  );
}
