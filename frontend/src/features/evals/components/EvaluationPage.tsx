import { Link, useParams } from "react-router";
import { StatusBadge } from "../../../components/Badge";
import { Card, PageHeader, Stat } from "../../../components/Card";
import { ProgressBar } from "../../../components/ProgressBar";
import { ErrorState, LoadingState } from "../../../components/States";
import { formatMetric } from "../../../lib/format";
import { useProjectId } from "../../../lib/use-project-id";
import { useEvaluation } from "../api/get-evaluation";
import { ResultsTable } from "./ResultsTable";
import { ScoresChart } from "./ScoresChart";

function interval(score: { mean: number | null; low: number | null; high: number | null } | undefined): string {
  if (!score || score.mean == null) return "—";
  return `${formatMetric(score.mean)} [${formatMetric(score.low)}, ${formatMetric(score.high)}]`;
}

export function EvaluationPage() {
  const projectId = useProjectId();
  const evaluationId = Number(useParams().evaluationId);
  const evaluation = useEvaluation(evaluationId);
  if (evaluation.isPending) return <LoadingState label="Loading the evaluation…" />;
  if (evaluation.isError) return <ErrorState error={evaluation.error} onRetry={() => void evaluation.refetch()} />;
  const e = evaluation.data;
  const labels = e.targets.map((t) => t.label);
  const summary = e.summary;
  const keys = Object.keys(summary.targets?.[labels[0] ?? ""]?.scores ?? {});
  return (
    <>
      <PageHeader
        breadcrumbs={<Link to={`/projects/${projectId}/evals`}>Evaluations</Link>}
        title={e.name || `Evaluation ${e.id}`}
        description={labels.join(" vs ")}
        actions={<StatusBadge status={e.status} />}
      />
      <div className="stack">
        {e.status === "queued" || e.status === "running" ? (
          <Card title="Progress">
            <ProgressBar value={e.row_count ? e.rows_done / e.row_count : null} label={`${e.rows_done} of ${e.row_count} rows`} />
          </Card>
        ) : null}
        {e.error ? <div className="alert alert-error">{e.error}</div> : null}
        {e.gate_passed != null ? (
          <div className={`alert ${e.gate_passed ? "alert-success" : "alert-warning"}`}>
            {e.gate_passed ? "Passes the gate" : "Fails the gate"}: {e.gate_reason}
          </div>
        ) : null}
        {summary.targets ? (
          <>
            <Card title="Scores (mean, 95% bootstrap interval)">
              <ScoresChart summary={summary} labels={labels} />
              <div className="table-wrap">
                <table className="table" aria-label="Aggregates">
                  <thead>
                    <tr>
                      <th>Score</th>
                      {labels.map((label) => (
                        <th key={label}>{label}</th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {keys.map((key) => (
                      <tr key={key}>
                        <td className="mono">{key}</td>
                        {labels.map((label) => {
                          const score = summary.targets?.[label]?.scores[key];
                          return (
                            <td key={label}>
                              {interval(score)}
                              {score?.unscored ? <span className="muted"> · {score.unscored} unscored</span> : null}
                            </td>
                          );
                        })}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </Card>
            {summary.pairs?.length ? (
              <Card title="Pairwise judge (both orders asked)">
                <div className="grid-cards">
                  {summary.pairs.map((pair) => (
                    <Stat
                      key={pair.second}
                      label={`${pair.second} against ${pair.first}`}
                      value={
                        pair.judged
                          ? `wins ${formatMetric((pair.second_wins ?? 0) * 100)}% · ties ${formatMetric((pair.ties ?? 0) * 100)}% · losses ${formatMetric((pair.first_wins ?? 0) * 100)}%`
                          : `no verdict (${pair.unscored} unscored)`
                      }
                    />
                  ))}
                </div>
              </Card>
            ) : null}
          </>
        ) : null}
        <Card title="Per question">
          <ResultsTable evaluationId={e.id} labels={labels} rowsDone={e.rows_done} />
        </Card>
      </div>
    </>
  );
}
