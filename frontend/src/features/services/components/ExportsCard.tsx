import { useState, type FormEvent } from "react";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import type { Export, ExportFormat, ExportQuantization, Runtime } from "../../../api/types";
import { StatusBadge } from "../../../components/Badge";
import { Button } from "../../../components/Button";
import { Card } from "../../../components/Card";
import { Field } from "../../../components/Field";
import { ProgressBar } from "../../../components/ProgressBar";
import { RecordTable, type Column } from "../../../components/RecordTable";
import { InlineError } from "../../../components/States";
import { formatBytes, formatRelative } from "../../../lib/format";
import { useCurrentTeam } from "../../../lib/current-team";
import { useRuns } from "../../../api/list-runs";
import { exportDownloadUrl, useCreateExport, useDeleteExport, useExports } from "../api/exports";

const FORMATS: { value: ExportFormat; label: string }[] = [
  { value: "hf", label: "Hugging Face folder (adapter or full)" },
  { value: "hf_merged", label: "Hugging Face folder, adapter merged" },
  { value: "onnx", label: "ONNX (verified against PyTorch)" },
  { value: "gguf", label: "GGUF for llama.cpp and Ollama (verified in llama.cpp)" },
  { value: "gguf_lora", label: "GGUF LoRA adapter for llama.cpp --lora (LoRA runs)" },
  { value: "bundle", label: "Standalone inference bundle (Dockerfile + server)" },
];

// The quantizations each format offers; "none" first (fp32 ONNX, f16 GGUF).
const QUANTIZATIONS: Partial<Record<ExportFormat, { value: ExportQuantization; label: string }[]>> = {
  onnx: [
    { value: "none", label: "None (fp32)" },
    { value: "int8", label: "int8 (dynamic)" },
  ],
  gguf: [
    { value: "none", label: "f16 (as trained)" },
    { value: "q8_0", label: "q8_0 (8-bit)" },
    { value: "q4_k_m", label: "q4_k_m (4.5-bit, smallest and fastest)" },
  ],
};

const QUANTIZATION_HELP: Partial<Record<ExportFormat, string>> = {
  onnx: "int8 is smaller and faster; it fails if it misses the quality budget against PyTorch.",
  gguf: "q8_0 and q4_k_m are smaller and faster in llama.cpp; they fail if they miss the quality budget against PyTorch.",
};

// What runs the model inside a bundle; each takes its own model format's quantizations.
const BUNDLE_RUNTIMES: { value: Runtime; label: string; quantizations: ExportFormat | null }[] = [
  { value: "pytorch", label: "PyTorch (merged safetensors)", quantizations: null },
  { value: "onnx", label: "ONNX Runtime (ONNX verified against PyTorch)", quantizations: "onnx" },
  { value: "llama.cpp", label: "llama.cpp (GGUF verified in llama.cpp, llama-server built from source)", quantizations: "gguf" },
];

function verificationSummary(verification: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(verification ?? {})) {
    if (typeof value === "number" || typeof value === "boolean" || typeof value === "string") parts.push(`${key.replace(/_/g, " ")}: ${String(value)}`);
  }
  return parts.slice(0, 5).join(" · ");
}

function NewExportForm({ projectId }: { projectId: number }) {
  const runs = useRuns(projectId);
  const succeeded = resultsOf(runs.data).filter((r) => r.status === "succeeded");
  const [run, setRun] = useState<string>("");
  const [format, setFormat] = useState<ExportFormat>("hf");
  const [quantize, setQuantize] = useState<ExportQuantization>("none");
  const [runtime, setRuntime] = useState<Runtime>("pytorch");
  const [keepAnyway, setKeepAnyway] = useState(false);
  const create = useCreateExport();
  const runId = run ? Number(run) : succeeded[0]?.id;
  // A bundle's quantizations are its runtime's model format's (int8 ONNX, q8_0/q4_k_m GGUF).
  const bundle = format === "bundle";
  const quantizationsOf = bundle ? BUNDLE_RUNTIMES.find((r) => r.value === runtime)?.quantizations : format;
  const choices = quantizationsOf ? QUANTIZATIONS[quantizationsOf] : undefined;
  const quantized = choices !== undefined && quantize !== "none";
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (runId)
      create.mutate({
        run: runId,
        checkpoint: null,
        format,
        quantize: quantized ? quantize : "none",
        ...(bundle ? { runtime } : {}),
        keep_anyway: quantized && keepAnyway,
      });
  };
  if (!succeeded.length) return <p className="muted small">Exports need a succeeded run.</p>;
  return (
    <form className="stack" onSubmit={submit} noValidate aria-label="New export">
      <div className="form-grid">
        <Field label="Run" errors={fieldError(create.error, "run")}>
          <select className="select" value={runId ?? ""} onChange={(e) => setRun(e.target.value)}>
            {succeeded.map((r) => (
              <option key={r.id} value={r.id}>
                {r.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Format" errors={fieldError(create.error, "format")}>
          <select
            className="select"
            value={format}
            onChange={(e) => {
              setFormat(e.target.value as ExportFormat);
              setQuantize("none");
            }}
          >
            {FORMATS.map((f) => (
              <option key={f.value} value={f.value}>
                {f.label}
              </option>
            ))}
          </select>
        </Field>
        {bundle ? (
          <Field label="Runtime" errors={fieldError(create.error, "runtime")}>
            <select
              className="select"
              value={runtime}
              onChange={(e) => {
                setRuntime(e.target.value as Runtime);
                setQuantize("none");
              }}
            >
              {BUNDLE_RUNTIMES.map((r) => (
                <option key={r.value} value={r.value}>
                  {r.label}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        {choices && quantizationsOf ? (
          <Field label="Quantization" errors={fieldError(create.error, "quantize")} help={QUANTIZATION_HELP[quantizationsOf]}>
            <select className="select" value={quantize} onChange={(e) => setQuantize(e.target.value as ExportQuantization)}>
              {choices.map((q) => (
                <option key={q.value} value={q.value}>
                  {q.label}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
      </div>
      {quantized ? (
        <label className="checkbox">
          <input type="checkbox" checked={keepAnyway} onChange={(e) => setKeepAnyway(e.target.checked)} />
          Keep it even if it misses the quality budget (marked with a warning; its answers will be worse)
        </label>
      ) : null}
      <InlineError error={errorBesideButton(create.error, ["run", "format", "quantize", "runtime", "keep_anyway"])} />
      <div className="form-actions">
        <Button type="submit" busy={create.isPending}>
          Export
        </Button>
      </div>
    </form>
  );
}

export function ExportsCard({ projectId }: { projectId: number }) {
  const exports = useExports(projectId);
  const runs = useRuns(projectId);
  const remove = useDeleteExport();
  const { canWrite } = useCurrentTeam();
  const runName = (id: number) => resultsOf(runs.data).find((r) => r.id === id)?.name ?? `run ${id}`;
  const columns: Column<Export>[] = [
    { header: "Run", cell: (e) => runName(e.run) },
    { header: "Format", cell: (e) => `${e.format}${e.runtime ? ` · ${e.runtime}` : ""}${e.quantize !== "none" ? ` · ${e.quantize}` : ""}` },
    {
      header: "Status",
      cell: (e) => (
        <>
          <StatusBadge status={e.status} />
          {e.status === "running" || e.status === "pending" ? <ProgressBar value={e.progress} label={`Export ${e.id} progress`} /> : null}
          {e.status === "failed" && e.error ? <div className="small" style={{ color: "var(--danger)" }}>{e.error}</div> : null}
          {e.quality_warning ? (
            <div className="alert alert-warning small" role="alert">
              {e.quality_warning}
            </div>
          ) : null}
        </>
      ),
    },
    { header: "Verification", className: "small muted", cell: (e) => verificationSummary(e.verification) },
    { header: "Size", className: "num", cell: (e) => formatBytes(e.size_bytes) },
    { header: "Created", className: "nowrap", cell: (e) => formatRelative(e.created_at) },
  ];
  return (
    <Card title="Exports" bodyClassName="">
      {canWrite ? (
        <div className="card-body">
          <NewExportForm projectId={projectId} />
        </div>
      ) : null}
      <RecordTable
        query={exports}
        columns={columns}
        empty="No exports yet"
        actions={(e) =>
          e.status === "succeeded" ? (
            <a className="btn btn-sm" href={exportDownloadUrl(e.id)} download>
              {e.quality_warning ? "Download (below quality budget)" : "Download"}
            </a>
          ) : null
        }
        remove={{
          mutation: remove,
          variables: (e) => e.id,
          label: "✕",
          ariaLabel: (e) => `Delete export ${e.id}`,
          allowed: () => canWrite,
          variant: "ghost",
        }}
      />
    </Card>
  );
}
