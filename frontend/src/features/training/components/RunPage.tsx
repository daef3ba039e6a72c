import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef } from "react";
import { Link, useParams } from "react-router";
import type { ProjectEvent } from "../../../api/types";
import { Badge, StatusBadge } from "../../../components/Badge";
import { Button } from "../../../components/Button";
import { Card, PageHeader, Stat } from "../../../components/Card";
import { ProgressBar } from "../../../components/ProgressBar";
import { RecordTable } from "../../../components/RecordTable";
import { EmptyState, ErrorState, InlineError, LoadingState, QueryState } from "../../../components/States";
import { formatDateTime, formatDuration, formatMetric, formatNumber, formatTime } from "../../../lib/format";
import { useProjectId } from "../../../lib/use-project-id";
import { useCurrentTeam } from "../../../lib/current-team";
import { useRun } from "../api/get-run";
import { EVALUATIONS_AFTER_RUN_MS, runEvaluationsKey, useRunEvaluations } from "../../../api/list-run-evaluations";
import { GateStatusNote } from "../../../components/GateStatusNote";
import { useTrackedRuns } from "../api/list-tracked-runs";
import { checkpointsKey, useCheckpoints } from "../../../api/list-checkpoints";
import { runEventsKey, useRunEvents } from "../api/list-run-events";
import { runMetricsKey, useRunMetrics } from "../api/list-run-metrics";
import { useCancelRun, useResumeRun } from "../api/run-actions";
import { isRunActive } from "../../../api/status";
import { curveRows, latestValue, runProgress } from "../run-status";
import { MetricCard, type Series } from "./MetricChart";
import { SampleAnswers } from "./SampleAnswers";

interface Chart {
  title: string;
  series: Series[];
  height?: number;
}

/** The run's curves, each a card of the metric points named by its series. */
const CHARTS = {
  loss: { title: "Loss", series: [{ key: "loss", label: "train loss", color: "var(--chart-1)" }, { key: "eval_loss", label: "eval loss", color: "var(--chart-2)" }] },
  learningRate: { title: "Learning rate", series: [{ key: "learning_rate", label: "learning rate", color: "var(--chart-3)" }] },
  // Preference runs (dpo, orpo, kto) also record their implicit rewards and how often the chosen answer wins.
  rewards: {
    title: "Rewards",
    series: [
      { key: "reward_chosen", label: "chosen reward", color: "var(--chart-3)" },
      { key: "reward_rejected", label: "rejected reward", color: "var(--chart-4)" },
      { key: "reward_margin", label: "margin", color: "var(--chart-1)" },
      { key: "eval_reward_margin", label: "held-out margin", color: "var(--chart-2)" },
    ],
  },
  preferenceAccuracy: {
    title: "Preference accuracy",
    series: [{ key: "preference_accuracy", label: "train", color: "var(--chart-1)" }, { key: "eval_preference_accuracy", label: "held-out pairs", color: "var(--chart-2)" }],
  },
  throughput: { title: "Throughput", series: [{ key: "tokens_per_second", label: "tokens/s", color: "var(--chart-5)" }], height: 180 },
} satisfies Record<string, Chart>;

const TRACKER_NAMES: Record<string, string> = { mlflow: "MLflow", wandb: "W&B" };

/** Links to the run's pages in the team's experiment trackers (MLflow, W&B). */
function TrackerLinks({ runId, live }: { runId: number; live: boolean }) {
  const tracked = useTrackedRuns(runId, live);
  const links = (tracked.data?.results ?? []).filter((t) => t.url);
  if (!links.length) return null;
  return (
    <>
      {links.map((t) => (
        <a key={t.id} className="btn" href={t.url} target="_blank" rel="noreferrer noopener">
          {TRACKER_NAMES[t.tracker] ?? t.tracker} run ↗
        </a>
      ))}
    </>
  );
}

export function EventLines({ events, follow }: { events: ProjectEvent[]; follow: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // Keep the newest line in view while following, like `tail -f`.
    if (follow && ref.current) ref.current.scrollTop = ref.current.scrollHeight;
  }, [events.length, follow]);
  return (
    <div className="log-view" ref={ref} style={{ height: 260, minHeight: 0 }} role="log" aria-live="off" tabIndex={0}>
      {events.map((e) => (
        <div key={e.id} className={`log-line log-level-${e.level}`}>
          <span className="muted">{formatTime(e.created_at)}</span>
          <span>{e.level}</span>
          <span className="muted">{e.source}</span>
          <span className="msg">{e.message}</span>
        </div>
      ))}
    </div>
  );
}

export function RunPage() {
  const projectId = useProjectId();
  const runId = Number(useParams().runId);
  const run = useRun(runId);
  const live = run.data ? isRunActive(run.data.status) : false;
  const metrics = useRunMetrics(runId, live);
  const events = useRunEvents(runId, live);
  const checkpoints = useCheckpoints(runId, live);
  const queryClient = useQueryClient();
  const wasLive = useRef(live);
  useEffect(() => {
    // The last checkpoint, metric points and log lines are written just before the run ends, and
    // these queries stop polling when it does: read them once more when it ends under our eyes.
    if (wasLive.current && !live) {
      for (const queryKey of [checkpointsKey(runId), runMetricsKey(runId), runEventsKey(runId), runEvaluationsKey(runId)]) {
        void queryClient.invalidateQueries({ queryKey });
      }
    }
    wasLive.current = live;
  }, [live, runId, queryClient]);
  const cancel = useCancelRun();
  const resume = useResumeRun();
  const { canWrite } = useCurrentTeam();
  const finishedAt = run.data?.finished_at ? new Date(run.data.finished_at).getTime() : 0;
  const evaluations = useRunEvaluations(runId, live ? 0 : finishedAt + EVALUATIONS_AFTER_RUN_MS);

  if (run.isPending) return <LoadingState label="Loading run…" />;
  if (run.isError) return <ErrorState error={run.error} onRetry={() => void run.refetch()} />;
  const r = run.data;
  const points = metrics.data?.items ?? [];
  const curves = (chart: Chart) => <MetricCard {...chart} rows={curveRows(points, chart.series.map((s) => s.key))} />;
  const isPreferenceRun = points.some((p) => p.name === "preference_accuracy");
  // A running run's elapsed time is meant to move on with each poll's render.
  // eslint-disable-next-line react-hooks/purity
  const elapsed = r.started_at ? ((r.finished_at ? new Date(r.finished_at).getTime() : Date.now()) - new Date(r.started_at).getTime()) / 1000 : null;
  const canResume = (r.status === "failed" || r.status === "cancelled") && (checkpoints.data?.length ?? 0) > 0;

  return (
    <>
      <PageHeader
        breadcrumbs={<Link to={`/projects/${projectId}/runs`}>Training runs</Link>}
        title={
          <span className="row">
            {r.name} <StatusBadge status={r.status} />
          </span>
        }
        description={`${r.base_model} · ${r.method === "lora" ? "LoRA" : "full fine-tune"} · attempt ${r.attempt} · created ${formatDateTime(r.created_at)}`}
        actions={
          <>
            <TrackerLinks runId={r.id} live={live} />
          {canWrite ? (
            <>
              {live ? (
                <Button variant="danger" busy={cancel.isPending} disabled={r.cancel_requested} onClick={() => cancel.mutate(r.id)}>
                  {r.cancel_requested ? "Cancelling…" : "Cancel run"}
                </Button>
              ) : null}
              {canResume ? (
                <Button busy={resume.isPending} onClick={() => resume.mutate(r.id)}>
                  Resume from last checkpoint
                </Button>
              ) : null}
              {r.status === "succeeded" ? (
                <Link className="btn btn-primary" to={`/projects/${projectId}/services?deploy=${r.id}`}>
                  Deploy
                </Link>
              ) : null}
            </>
          ) : null}
          </>
        }
      />
      <div className="stack">
        <InlineError error={cancel.error ?? resume.error} />
        {r.status === "succeeded" ? <GateStatusNote projectId={projectId} runId={r.id} /> : null}
        {r.status === "failed" && r.error ? (
          <div className="alert alert-error" role="alert">
            <strong>The run failed.</strong> <span className="mono">{r.error.split("\n").slice(-3).join(" ")}</span>
          </div>
        ) : null}
        <Card>
          <div className="stack">
            <ProgressBar value={runProgress(r)} label="Training progress" />
            <div className="grid-cards" style={{ gridTemplateColumns: "repeat(auto-fill, minmax(130px, 1fr))" }}>
              <Stat label="Step" value={`${formatNumber(r.progress_step)}${r.progress_total ? ` / ${formatNumber(r.progress_total)}` : ""}`} />
              <Stat label="ETA" value={r.status === "running" ? formatDuration(r.eta_seconds) : r.status === "queued" ? (r.queue_position ? `#${r.queue_position} in queue` : "queued") : "—"} />
              <Stat label="Elapsed" value={formatDuration(elapsed)} />
              <Stat label="Tokens / s" value={formatNumber(r.tokens_per_second ?? latestValue(points, "tokens_per_second"), 0)} />
              <Stat label="Train loss" value={formatMetric(latestValue(points, "loss"))} />
              <Stat label="Eval loss" value={formatMetric(latestValue(points, "eval_loss") ?? r.summary_metrics?.eval_loss)} />
              {r.eval_results?.perplexity !== undefined ? <Stat label="Perplexity" value={formatMetric(r.eval_results.perplexity)} /> : null}
              {isPreferenceRun ? (
                // How often the run prefers the chosen answer on pairs it never trained on: 0.5 is chance.
                <Stat label="Held-out preference accuracy" value={formatMetric(latestValue(points, "eval_preference_accuracy") ?? r.summary_metrics?.eval_preference_accuracy)} />
              ) : null}
            </div>
          </div>
        </Card>
        <div className="grid-2">
          {curves(CHARTS.loss)}
          {curves(CHARTS.learningRate)}
        </div>
        {isPreferenceRun ? (
          <div className="grid-2">
            {curves(CHARTS.rewards)}
            {curves(CHARTS.preferenceAccuracy)}
          </div>
        ) : null}
        <div className="grid-2">
          {curves(CHARTS.throughput)}
          <Card title="Checkpoints" bodyClassName="">
            <QueryState query={checkpoints} isEmpty={(d) => d.length === 0} empty={<EmptyState title="No checkpoints yet" />}>
              {(data) => (
                <div className="table-wrap" style={{ maxHeight: 240 }}>
                  <table className="table">
                    <thead>
                      <tr>
                        <th className="num">Step</th>
                        <th className="num">Eval loss</th>
                        <th>Attempt</th>
                        <th>Saved</th>
                      </tr>
                    </thead>
                    <tbody>
                      {data.map((c) => (
                        <tr key={c.id}>
                          <td className="num">
                            {c.step} {c.is_best ? <Badge tone="success">best</Badge> : null}
                          </td>
                          <td className="num">{formatMetric(c.eval_loss)}</td>
                          <td>{c.attempt}</td>
                          <td className="nowrap">{formatTime(c.created_at)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
            </QueryState>
          </Card>
        </div>
        {(evaluations.data?.results ?? []).some((e) => e.purpose === "run") ? (
          <Card title="Sample answers">
            <div className="stack">
              {(evaluations.data?.results ?? [])
                .filter((e) => e.purpose === "run")
                .map((e) => (
                  <SampleAnswers key={e.id} projectId={projectId} evaluation={e} />
                ))}
            </div>
          </Card>
        ) : null}
        <Card title="Evaluations" bodyClassName="">
          <RecordTable
            query={evaluations}
            empty={<EmptyState title="No evaluations yet">When the run succeeds, its validation rows are answered by it and its base model, and the project's gate checks it.</EmptyState>}
            columns={[
              { header: "Evaluation", cell: (e) => <Link to={`/projects/${projectId}/evals/${e.id}`}>{e.name || `Evaluation ${e.id}`}</Link> },
              { header: "Status", cell: (e) => <StatusBadge status={e.status} /> },
              {
                header: "Result",
                cell: (e) => <span className="muted">{e.gate_passed == null ? `${e.rows_done}/${e.row_count} rows` : `${e.gate_passed ? "passes" : "fails"} the gate: ${e.gate_reason}`}</span>,
              },
            ]}
          />
        </Card>
        <Card title="Log">
          {events.isError ? <InlineError error={events.error} /> : events.isPending ? <LoadingState /> : <EventLines events={events.data.items} follow={live} />}
        </Card>
        <Card title="Configuration">
          <dl className="config-list">
            {Object.entries(r.config).map(([key, value]) => (
              <div key={key}>
                <dt>{key}</dt>
                <dd>{typeof value === "string" ? value : JSON.stringify(value)}</dd>
              </div>
            ))}
          </dl>
        </Card>
      </div>
    </>
  );
}
