import { useState } from "react";
import type { EvalResult, RowAnswer } from "../../../api/types";
import { Button } from "../../../components/Button";
import { QueryState } from "../../../components/States";
import { useResults, type ResultFilters } from "../api/list-results";

function promptOf(result: EvalResult): string {
  return typeof result.input === "string" ? result.input : (result.input.at(-1)?.content ?? "");
}

function Verdicts({ answer }: { answer: RowAnswer }) {
  return (
    <div className="eval-verdicts">
      {Object.entries(answer.passed).map(([key, passed]) => (
        <span key={key} className={`badge ${passed == null ? "" : passed ? "badge-success" : "badge-danger"}`} title={`${key}: ${answer.scores[key] ?? "unscored"}`}>
          {key} {passed == null ? "–" : passed ? "✓" : "✗"}
        </span>
      ))}
      {answer.judge ? (
        <details>
          <summary>{answer.judge.unscored ? "judge: unscored" : `judge: ${answer.judge.score}/5`}</summary>
          <p className="muted">{answer.judge.reasoning || answer.judge.raw}</p>
        </details>
      ) : null}
    </div>
  );
}

/** The per-question table: each target's answer side by side; answers that differ from the first target's are marked. */
export function ResultsTable({ evaluationId, labels, rowsDone }: { evaluationId: number; labels: string[]; rowsDone: number }) {
  const [filters, setFilters] = useState<ResultFilters>({ regressions: false, disagreements: false, tag: "", page: 1 });
  const results = useResults(evaluationId, filters, rowsDone);
  const set = (change: Partial<ResultFilters>) => setFilters((f) => ({ ...f, page: 1, ...change }));
  return (
    <div className="stack">
      <div className="row">
        <label className="checkbox">
          <input type="checkbox" checked={filters.regressions} onChange={(e) => set({ regressions: e.target.checked })} />
          Regressions only (an earlier target passed, a later one fails)
        </label>
        <label className="checkbox">
          <input type="checkbox" checked={filters.disagreements} onChange={(e) => set({ disagreements: e.target.checked })} />
          Disagreements only
        </label>
        <input className="input" placeholder="Tag" aria-label="Tag" value={filters.tag} onChange={(e) => set({ tag: e.target.value.trim() })} />
      </div>
      <QueryState query={results} loadingLabel="Loading results…">
        {(page) => (
          <>
            <div className="table-wrap">
              <table className="table" aria-label="Per-question results">
                <thead>
                  <tr>
                    <th>#</th>
                    <th>Question</th>
                    <th>Reference</th>
                    {labels.map((label) => (
                      <th key={label}>{label}</th>
                    ))}
                    {labels.length > 1 ? <th>Pairwise</th> : null}
                  </tr>
                </thead>
                <tbody>
                  {page.results.map((result) => {
                    const first = result.answers[labels[0] ?? ""]?.answer;
                    return (
                      <tr key={result.id} className={result.regression ? "eval-regression" : undefined}>
                        <td>{result.index + 1}</td>
                        <td>{promptOf(result)}</td>
                        <td className="muted">{result.reference ?? "—"}</td>
                        {labels.map((label, i) => {
                          const answer = result.answers[label];
                          if (!answer) return <td key={label}>—</td>;
                          const differs = i > 0 && answer.answer !== first;
                          return (
                            <td key={label} className={differs ? "eval-differs" : undefined}>
                              <div className="eval-answer">{answer.error ? <em>{answer.error}</em> : answer.answer || <em>(empty)</em>}</div>
                              <Verdicts answer={answer} />
                            </td>
                          );
                        })}
                        {labels.length > 1 ? (
                          <td>
                            {result.pairwise.map((p) => (
                              <div key={p.second} title={p.raw.join("\n---\n")}>
                                {p.winner == null ? "unscored" : p.winner === "tie" ? "tie" : `${p.winner === "a" ? p.first : p.second} wins`}
                              </div>
                            ))}
                          </td>
                        ) : null}
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
            <div className="row">
              <span className="muted">{page.count} rows</span>
              <Button size="sm" disabled={!page.previous} onClick={() => setFilters((f) => ({ ...f, page: f.page - 1 }))}>
                Previous
              </Button>
              <Button size="sm" disabled={!page.next} onClick={() => setFilters((f) => ({ ...f, page: f.page + 1 }))}>
                Next
              </Button>
            </div>
          </>
        )}
      </QueryState>
    </div>
  );
}
