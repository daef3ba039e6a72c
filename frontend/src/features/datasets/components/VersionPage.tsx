import { useState } from "react";
import { Link, useParams } from "react-router";
import { StatusBadge } from "../../../components/Badge";
import { Button } from "../../../components/Button";
import { Card, PageHeader, Stat } from "../../../components/Card";
import { ProgressBar } from "../../../components/ProgressBar";
import { EmptyState, ErrorState, InlineError, LoadingState, QueryState } from "../../../components/States";
import { formatBytes, formatDateTime, formatNumber } from "../../../lib/format";
import { useProjectId } from "../../../lib/use-project-id";
import { useConfigOptions } from "../../../api/get-config-options";
import { useDataset } from "../api/get-dataset";
import { useVersion, versionDownloadUrl } from "../api/get-version";
import { useVersionPreview } from "../api/get-version-preview";
import { useVersionReport } from "../api/get-version-report";
import { useFactCheckQuestions, type FactCheckInfo } from "../api/get-fact-check";
import { isVersionBusy } from "../../../api/status";
import { invalidCountOf, invalidRowsOf } from "../version-status";
import type { PreviewRow } from "../../../api/types";
import { RenderedRow } from "./RenderedRow";
import { TokenHistogramChart } from "./TokenHistogramChart";

function BaseModelPicker({ value, onChange }: { value: string; onChange: (model: string) => void }) {
  const presets = useConfigOptions().data?.base_models ?? [];
  return (
    <label className="row small">
      <span>Template of</span>
      <select className="select" style={{ width: "auto" }} value={value} onChange={(e) => onChange(e.target.value)}>
        {presets.map((p) => (
          <option key={p.name} value={p.name}>
            {p.name}
          </option>
        ))}
      </select>
    </label>
  );
}

/** Where a row came from; its document and (knowledge recipe) its fact filter the rows to their siblings. */
function RowProvenance({ row, onSource, onFact }: { row: PreviewRow; onSource: (source: string) => void; onFact: (fact: string) => void }) {
  const metadata = (typeof row.row === "object" && row.row !== null ? (row.row as { metadata?: Record<string, unknown> }).metadata : undefined) ?? {};
  const source = typeof metadata.source === "string" ? metadata.source : "";
  const factId = typeof metadata.fact_id === "string" ? metadata.fact_id : "";
  return (
    <>
      {source ? (
        <Button size="sm" variant="ghost" onClick={() => onSource(source)}>
          · {source}
        </Button>
      ) : null}
      {factId ? (
        <Button size="sm" variant="ghost" title={String(metadata.fact)} onClick={() => onFact(factId)}>
          · all questions of this fact
        </Button>
      ) : null}
    </>
  );
}

function PreviewCard({ versionId, baseModel, onBaseModel }: { versionId: number; baseModel: string; onBaseModel: (model: string) => void }) {
  const [page, setPage] = useState(1);
  const [source, setSource] = useState("");
  const [fact, setFact] = useState("");
  const preview = useVersionPreview({ versionId, baseModel, page, source, fact }, Boolean(baseModel));
  return (
    <Card
      title="Rows as the model sees them"
      actions={<BaseModelPicker value={baseModel} onChange={(model) => { onBaseModel(model); setPage(1); }} />}
    >
      <p className="small muted" style={{ marginTop: 0 }}>
        <mark className="trained" style={{ background: "var(--trained-bg)", color: "var(--trained-text)" }}>Highlighted</mark> text is what the loss is computed on.
      </p>
      <div className="row small">
        <label className="row">
          Document
          <input className="input" value={source} placeholder="any" onChange={(e) => { setSource(e.target.value); setPage(1); }} />
        </label>
        <label className="row">
          Fact
          <input className="input" value={fact} placeholder="any" onChange={(e) => { setFact(e.target.value); setPage(1); }} />
        </label>
      </div>
      <QueryState query={preview} isEmpty={(d) => d.results.length === 0} empty={<EmptyState title="No rows to preview" />}>
        {(data) => (
          <div className="stack">
            {data.results.map((row) => (
              <div key={row.line} className="stack-sm">
                <div className="row small muted">
                  <span>Line {row.line}</span>
                  {row.token_count !== undefined ? <span>· {row.token_count} tokens</span> : null}
                  {row.trained_token_count !== undefined ? <span>· {row.trained_token_count} trained on</span> : null}
                  <RowProvenance row={row} onSource={(s) => { setSource(s); setPage(1); }} onFact={(f) => { setFact(f); setPage(1); }} />
                </div>
                <RenderedRow row={row} />
              </div>
            ))}
            <div className="row">
              <Button size="sm" disabled={page === 1 || preview.isFetching} onClick={() => setPage(page - 1)}>
                Previous
              </Button>
              <span className="small">Page {page}</span>
              <Button size="sm" disabled={!data.next || preview.isFetching} onClick={() => setPage(page + 1)}>
                Next
              </Button>
            </div>
          </div>
        )}
      </QueryState>
    </Card>
  );
}

interface KnowledgeStats {
  facts: number;
  rows_kept: number;
  rows_dropped: number;
  answers_from_fact?: number;
  facts_from_chunk?: number;
  gap_fills?: number;
  chunks_failed: number;
  teacher_tokens: number;
  dropped_by_reason: Record<string, number>;
}

/**
 * What the knowledge recipe's teacher made of the documents, and the held-out fact check it wrote: the
 * questions no training row contains, saved as an eval set that scores every run trained on this version.
 */
export function KnowledgeCard({ stats, projectId }: { stats: Record<string, unknown>; projectId: number }) {
  const check = stats.fact_check as FactCheckInfo | undefined;
  const questions = useFactCheckQuestions(check?.eval_set_version);
  const sources = ((stats.sources as { knowledge?: KnowledgeStats }[] | undefined) ?? []).flatMap((s) => (s.knowledge ? [s.knowledge] : []));
  const total = (name: keyof Omit<KnowledgeStats, "dropped_by_reason">) => sources.reduce((n, s) => n + (s[name] || 0), 0);
  const reasons = Object.entries(
    sources.reduce<Record<string, number>>((all, s) => {
      for (const [reason, n] of Object.entries(s.dropped_by_reason ?? {})) all[reason] = (all[reason] ?? 0) + n;
      return all;
    }, {}),
  );
  return (
    <Card title="Knowledge recipe" actions={check ? <Link className="btn" to={`/projects/${projectId}/evals`}>Evaluate</Link> : null}>
      <div className="grid-cards" style={{ gridTemplateColumns: "repeat(auto-fill, minmax(130px, 1fr))" }}>
        <Stat label="Facts" value={formatNumber(total("facts"))} />
        <Stat label="Facts from left-out sentences" value={formatNumber(total("facts_from_chunk"))} />
        <Stat label="Rows kept" value={formatNumber(total("rows_kept"))} />
        <Stat label="Teacher replies dropped" value={formatNumber(total("rows_dropped"))} />
        <Stat label="Answered by their fact" value={formatNumber(total("answers_from_fact"))} />
        <Stat label="Gap-fill rows" value={formatNumber(total("gap_fills"))} />
        <Stat label="Chunks failed" value={formatNumber(total("chunks_failed"))} />
        <Stat label="Teacher tokens" value={formatNumber(total("teacher_tokens"))} />
      </div>
      {reasons.length ? (
        <p className="small muted">
          Dropped: {reasons.map(([reason, n]) => `${n} × ${reason}`).join("; ")}. A question whose answer was dropped is answered by its fact, which passed the
          same check.
        </p>
      ) : null}
      {check ? (
        <div className="stack-sm" aria-label="Fact check">
          <p style={{ marginBottom: 0 }}>
            Fact check: {check.questions} held-out question{check.questions === 1 ? "" : "s"} saved as eval set <strong>{check.eval_set_name}</strong> (version{" "}
            {check.eval_set_version_number}). None of them is a training row; a run trained on this version is scored on them when it succeeds.
          </p>
          <QueryState query={questions}>
            {(page) => (
              <table className="table" aria-label="Fact-check questions">
                <thead>
                  <tr>
                    <th>Question</th>
                    <th>The answer must include</th>
                    <th>Fact</th>
                  </tr>
                </thead>
                <tbody>
                  {page.results.map((q) => (
                    <tr key={q.index}>
                      <td>{q.input}</td>
                      <td>{q.must_include.join(", ")}</td>
                      <td className="muted small">{q.reference}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </QueryState>
        </div>
      ) : (
        <p className="small muted">No fact check: the teacher wrote no question that could be held out.</p>
      )}
    </Card>
  );
}

export function VersionPage() {
  const projectId = useProjectId();
  const params = useParams();
  const datasetId = Number(params.datasetId);
  const versionId = Number(params.versionId);
  const dataset = useDataset(datasetId);
  const version = useVersion(versionId);
  const firstPreset = useConfigOptions().data?.base_models[0]?.name ?? "";
  const [chosenModel, setBaseModel] = useState<string | null>(null);
  const baseModel = chosenModel ?? firstPreset;
  const measured = useVersionReport(versionId, baseModel, version.data?.status === "ready" && Boolean(baseModel));
  if (version.isPending) return <LoadingState label="Loading version…" />;
  if (version.isError) return <ErrorState error={version.error} onRetry={() => void version.refetch()} />;
  const v = version.data;
  const report = v.validation_report ?? {};
  const invalidRows = invalidRowsOf(report);
  const busy = isVersionBusy(v.status);
  // Token counts need a tokenizer: the report measured with the chosen base model has them.
  const histogram = measured.data?.token_histogram ?? report.token_histogram;
  return (
    <>
      <PageHeader
        breadcrumbs={
          <>
            <Link to={`/projects/${projectId}/datasets`}>Datasets</Link> / <Link to={`/projects/${projectId}/datasets/${datasetId}`}>{dataset.data?.name ?? "…"}</Link>
          </>
        }
        title={
          <span className="row">
            Version {v.number} <StatusBadge status={v.status} />
          </span>
        }
        description={v.note || `Imported ${formatDateTime(v.created_at)} from ${v.source_kind.replace(/_/g, " ")}`}
        actions={
          v.status === "ready" ? (
            <>
              <a className="btn" href={versionDownloadUrl(v.id)} download>
                Download JSONL
              </a>
              <Link className="btn btn-primary" to={`/projects/${projectId}/runs/new?version=${v.id}`}>
                Train on this version
              </Link>
            </>
          ) : null
        }
      />
      <div className="stack">
        {busy ? (
          <Card>
            <div className="stack-sm" aria-live="polite">
              <strong>{v.progress_message || `Status: ${v.status}`}</strong>
              <ProgressBar value={v.progress} label="Import progress" />
            </div>
          </Card>
        ) : null}
        {v.status === "failed" ? (
          <div className="alert alert-error" role="alert">
            <strong>Import failed.</strong> {v.error}
          </div>
        ) : null}
        <Card title="Validation report">
          <div className="grid-cards" style={{ gridTemplateColumns: "repeat(auto-fill, minmax(130px, 1fr))" }}>
            <Stat label="Rows" value={formatNumber(v.row_count ?? report.total_rows)} />
            <Stat label="Valid rows" value={formatNumber(report.valid_rows)} />
            <Stat label="Invalid rows" value={formatNumber(invalidCountOf(report))} />
            <Stat label="Duplicates" value={formatNumber(report.duplicate_count)} />
            <Stat label="Empty outputs" value={formatNumber(report.empty_output_count)} />
            <Stat label="Over context" value={formatNumber(report.over_context_count)} />
            <Stat label="Size" value={formatBytes(v.size_bytes)} />
          </div>
          {report.summary ? <p style={{ marginBottom: 0 }}>{report.summary}</p> : null}
          {v.sha256 ? (
            <p className="small muted" style={{ marginBottom: 0 }}>
              sha256 <code>{v.sha256}</code>
            </p>
          ) : null}
        </Card>
        {invalidRows.length ? (
          <Card title={`Invalid rows (${invalidRows.length})`} bodyClassName="">
            <div className="table-wrap" style={{ maxHeight: 320 }}>
              <table className="table">
                <thead>
                  <tr>
                    <th>Where</th>
                    <th>Field</th>
                    <th>Reason</th>
                  </tr>
                </thead>
                <tbody>
                  {invalidRows.map((r, i) => (
                    <tr key={`${r.source ?? ""}-${r.line}-${i}`}>
                      <td>{r.source ? `${r.source}, ${r.location ?? ""}` : `line ${r.line}`}</td>
                      <td>
                        <code>{r.field ?? "—"}</code>
                      </td>
                      <td>{r.reason}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </Card>
        ) : v.status === "ready" ? (
          <div className="alert alert-success">Every row is valid.</div>
        ) : null}
        <Card title={`Token lengths${measured.data?.base_model ? ` with ${measured.data.base_model}` : ""}`} actions={v.status === "ready" ? <BaseModelPicker value={baseModel} onChange={setBaseModel} /> : null}>
          {measured.isError ? <InlineError error={measured.error} /> : null}
          {measured.isFetching && !measured.data ? (
            <LoadingState label="Counting tokens…" />
          ) : (
            <TokenHistogramChart histogram={histogram} maxLength={measured.data?.max_seq_length ?? report.max_seq_length ?? undefined} />
          )}
          {measured.data ? (
            <p className="small muted" style={{ marginBottom: 0 }}>
              {formatNumber(measured.data.over_context_count)} rows longer than {formatNumber(measured.data.max_seq_length)} tokens.
            </p>
          ) : null}
        </Card>
        {v.status === "ready" && (v.source_config as { recipe?: string } | undefined)?.recipe === "knowledge" ? <KnowledgeCard stats={v.stats as Record<string, unknown>} projectId={projectId} /> : null}
        {v.status === "ready" ? <PreviewCard versionId={v.id} baseModel={baseModel} onBaseModel={setBaseModel} /> : null}
      </div>
    </>
  );
}
