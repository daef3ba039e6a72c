import { Link } from "react-router";
import { useSampleAnswers } from "../../../api/list-sample-answers";
import type { EvalResult, Evaluation } from "../../../api/types";
import { StatusBadge } from "../../../components/Badge";
import { QueryState } from "../../../components/States";
import { formatMetric } from "../../../lib/format";

function promptOf(input: EvalResult["input"]): string {
  return typeof input === "string" ? input : (input.at(-1)?.content ?? "");
}

/** The first answers of a run's automatic evaluation (its validation rows, answered by its base
 * model and by the run), each target's mean scores, and a link to every row. */
export function SampleAnswers({ projectId, evaluation }: { projectId: number; evaluation: Evaluation }) {
  const samples = useSampleAnswers(evaluation.id, evaluation.rows_done);
  const labels = evaluation.targets.map((t) => t.label);
  const summary = evaluation.summary.targets ?? {};
  const scoreNames = Object.keys(summary[labels[0] ?? ""]?.scores ?? {});
  return (
    <section className="stack-sm" aria-label={`Sample answers: ${evaluation.name}`}>
      <div className="row">
        <strong>{evaluation.name}</strong> <StatusBadge status={evaluation.status} />
        <Link to={`/projects/${projectId}/evals/${evaluation.id}`}>
          All {evaluation.row_count} rows and scores
        </Link>
      </div>
      {scoreNames.length ? (
        <p className="small muted">
          {labels.map((label) => `${label}: ${scoreNames.map((name) => `${name} ${formatMetric(summary[label]?.scores[name]?.mean)}`).join(", ")}`).join(" · ")}
        </p>
      ) : null}
      <QueryState query={samples} isEmpty={(page) => page.results.length === 0} empty={<p className="muted">No rows answered yet.</p>}>
        {(page) => (
          <div className="table-wrap">
            <table className="table">
              <thead>
                <tr>
                  <th>Prompt</th>
                  <th>Expected</th>
                  {labels.map((label) => (
                    <th key={label}>{label}</th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {page.results.map((row) => (
                  <tr key={row.id}>
                    <td>{promptOf(row.input)}</td>
                    <td className="muted">{row.reference ?? "—"}</td>
                    {labels.map((label) => (
                      <td key={label}>{row.answers[label]?.error ? <span className="muted">{row.answers[label]?.error}</span> : row.answers[label]?.answer}</td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </QueryState>
    </section>
  );
}
