import { useState } from "react";
import { Link, useNavigate } from "react-router";
import { resultsOf } from "../../../api/client";
import { StatusBadge } from "../../../components/Badge";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { ProgressBar } from "../../../components/ProgressBar";
import { EmptyState, QueryState } from "../../../components/States";
import { formatDuration, formatMetric, formatRelative } from "../../../lib/format";
import { useProject } from "../../../api/get-project";
import { useProjectId } from "../../../lib/use-project-id";
import { useCurrentTeam } from "../../../lib/current-team";
import { useRuns } from "../../../api/list-runs";
import { runProgress } from "../run-status";

export function RunsPage() {
  const projectId = useProjectId();
  const project = useProject(projectId);
  const runs = useRuns(projectId);
  const { canWrite } = useCurrentTeam();
  const [selected, setSelected] = useState<number[]>([]);
  const navigate = useNavigate();
  const toggle = (id: number) => setSelected((s) => (s.includes(id) ? s.filter((x) => x !== id) : [...s, id]));
  const newButton = canWrite ? (
    <Link className="btn btn-primary" to="new">
      New run
    </Link>
  ) : null;
  return (
    <>
      <PageHeader
        breadcrumbs={<><Link to="/projects">Projects</Link> / <Link to={`/projects/${projectId}`}>{project.data?.name ?? "…"}</Link></>}
        title="Training runs"
        description="Queued and running runs update live."
        actions={
          <>
            <Button disabled={selected.length < 2} onClick={() => void navigate(`compare?ids=${selected.join(",")}`)}>
              Compare {selected.length >= 2 ? selected.length : ""} runs
            </Button>
            {newButton}
          </>
        }
      />
      <Card bodyClassName="">
        <QueryState
          query={runs}
          loadingLabel="Loading runs…"
          isEmpty={(d) => resultsOf(d).length === 0}
          empty={<EmptyState title="No runs yet" action={newButton}>Start a run on a validated dataset version.</EmptyState>}
        >
          {(data) => (
            <div className="table-wrap">
              <table className="table">
                <thead>
                  <tr>
                    <th>
                      <span className="visually-hidden">Select for comparison</span>
                    </th>
                    <th>Run</th>
                    <th>Status</th>
                    <th style={{ minWidth: 160 }}>Progress</th>
                    <th>ETA</th>
                    <th>Base model</th>
                    <th className="num">Eval loss</th>
                    <th>Created</th>
                  </tr>
                </thead>
                <tbody>
                  {resultsOf(data).map((run) => (
                    <tr key={run.id} className={selected.includes(run.id) ? "selected" : undefined}>
                      <td>
                        <input type="checkbox" aria-label={`Compare ${run.name}`} checked={selected.includes(run.id)} onChange={() => toggle(run.id)} />
                      </td>
                      <td>
                        <Link to={`${run.id}`}>{run.name}</Link>
                        <div className="small muted">
                          {run.method === "lora" ? "LoRA" : "Full"} · attempt {run.attempt}
                        </div>
                      </td>
                      <td>
                        <StatusBadge status={run.status} />
                        {run.status === "queued" && run.queue_position ? <div className="small muted">#{run.queue_position} in queue</div> : null}
                      </td>
                      <td>
                        <div className="stack-sm">
                          <ProgressBar value={runProgress(run)} label={`Progress of ${run.name}`} />
                          <span className="small muted">
                            {run.progress_step}
                            {run.progress_total ? ` / ${run.progress_total}` : ""} steps
                          </span>
                        </div>
                      </td>
                      <td className="nowrap">{run.status === "running" ? formatDuration(run.eta_seconds) : "—"}</td>
                      <td className="truncate" style={{ maxWidth: 200 }}>
                        {run.base_model}
                      </td>
                      <td className="num">{formatMetric(run.summary_metrics?.eval_loss ?? (run.eval_results?.eval_loss as number | undefined))}</td>
                      <td className="nowrap">{formatRelative(run.created_at)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </QueryState>
      </Card>
    </>
  );
}
