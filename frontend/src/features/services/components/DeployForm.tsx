import { useState, type FormEvent } from "react";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import type { GgufType, Precision, Runtime } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";
import { formatMetric } from "../../../lib/format";
import { useCheckpoints } from "../../../api/list-checkpoints";
import { useRuns } from "../../../api/list-runs";
import { useCreateDeployment } from "../api/create-deployment";
import { useGateStatus } from "../../../api/get-gate-status";
import { GateStatusNote } from "../../../components/GateStatusNote";
import { PRECISIONS } from "./PrecisionNote";

/** What each runtime is for (docs/serving.md, "Which runtime"), shown under the choice. */
export const RUNTIMES: { value: Runtime; label: string; help: string }[] = [
  { value: "pytorch", label: "PyTorch", help: "Many clients at once: continuous batching, LoRA adapters sharing their base." },
  { value: "onnx", label: "ONNX Runtime", help: "The verified ONNX export, merged, in float32." },
  { value: "llama.cpp", label: "llama.cpp (GGUF)", help: "Fastest single stream on a CPU: a llama-server per base model, LoRA adapters sharing it." },
];

export const GGUF_TYPES: { value: GgufType; label: string }[] = [
  { value: "f16", label: "f16 (as trained; a LoRA shares its base)" },
  { value: "q8_0", label: "q8_0 (8-bit, merged)" },
  { value: "q4_k_m", label: "q4_k_m (4.5-bit, merged, fastest)" },
];

/** A model id clients can type: the run name lower-cased, with only URL-safe characters. */
export function suggestModelName(runName: string): string {
  return runName.toLowerCase().replace(/[^a-z0-9._:-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 100) || "model";
}

export function DeployForm({ projectId, initialRun, onDone }: { projectId: number; initialRun: number | null; onDone: () => void }) {
  const runs = useRuns(projectId);
  const succeeded = resultsOf(runs.data).filter((r) => r.status === "succeeded");
  const [runId, setRunId] = useState<number | null>(initialRun);
  const run = succeeded.find((r) => r.id === runId) ?? succeeded[0];
  const checkpoints = useCheckpoints(run?.id ?? 0, false);
  const [checkpoint, setCheckpoint] = useState<string>("");
  const [runtime, setRuntime] = useState<Runtime>("pytorch");
  const [merge, setMerge] = useState(false);
  const [precision, setPrecision] = useState<Precision>("auto");
  const [ggufType, setGgufType] = useState<GgufType>("f16");
  const [name, setName] = useState("");
  const [override, setOverride] = useState(false);
  const [overrideReason, setOverrideReason] = useState("");
  const gate = useGateStatus(run?.id ?? 0);
  const blocked = gate.data != null && gate.data.state !== "none" && gate.data.state !== "passes";
  const create = useCreateDeployment();
  const modelName = name || (run ? suggestModelName(run.name) : "");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!run) return;
    create.mutate(
      {
        name: modelName, run: run.id, checkpoint: checkpoint ? Number(checkpoint) : null, runtime, merge_adapter: merge,
        ...(runtime === "pytorch" ? { precision } : {}),
        ...(runtime === "llama.cpp" ? { gguf_type: ggufType } : {}),
        ...(blocked && override ? { override_gate: true, override_reason: overrideReason } : {}),
      },
      { onSuccess: onDone },
    );
  };
  if (!runs.isPending && succeeded.length === 0) {
    return <p className="muted">No succeeded run to deploy yet. Train one first.</p>;
  }
  return (
    <form className="stack" onSubmit={submit} noValidate aria-label="Deploy a run">
      <div className="form-grid">
        <Field label="Run" errors={fieldError(create.error, "run")}>
          <select className="select" value={run?.id ?? ""} onChange={(e) => { setRunId(Number(e.target.value)); setCheckpoint(""); }}>
            {succeeded.map((r) => (
              <option key={r.id} value={r.id}>
                {r.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Checkpoint" errors={fieldError(create.error, "checkpoint")} help="Default: the best checkpoint (lowest eval loss), else the final model.">
          <select className="select" value={checkpoint} onChange={(e) => setCheckpoint(e.target.value)}>
            <option value="">Best (default)</option>
            {(checkpoints.data ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                step {c.step} · eval loss {formatMetric(c.eval_loss)}
                {c.is_best ? " · best" : ""}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Model name" errors={fieldError(create.error, "name")} help="The model id clients pass to the API.">
          <input className="input mono" value={modelName} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Runtime" errors={fieldError(create.error, "runtime")} help={RUNTIMES.find((r) => r.value === runtime)?.help}>
          <select className="select" value={runtime} onChange={(e) => setRuntime(e.target.value as Runtime)}>
            {RUNTIMES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </Field>
        {runtime === "llama.cpp" ? (
          <Field label="GGUF type" errors={fieldError(create.error, "gguf_type")}
                 help="Converted when deploying and verified against PyTorch; q8_0 and q4_k_m must keep the export's quality budget.">
            <select className="select" value={ggufType} onChange={(e) => setGgufType(e.target.value as GgufType)}>
              {GGUF_TYPES.map((g) => (
                <option key={g.value} value={g.value}>
                  {g.label}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        {runtime === "pytorch" ? (
          <Field label="Precision" errors={fieldError(create.error, "precision")}
                 help="auto: bfloat16 where the CPU has it natively, else int8 where it has the kernels (VNNI), else float16 (any AVX2 CPU), each only if the model keeps its quality budget (checked at load), else float32.">
            <select className="select" value={precision} onChange={(e) => setPrecision(e.target.value as Precision)}>
              {PRECISIONS.map((p) => (
                <option key={p.value} value={p.value}>
                  {p.label}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
      </div>
      {run?.method === "lora" && !(runtime === "llama.cpp" && ggufType !== "f16") ? (
        <label className="checkbox">
          <input type="checkbox" checked={merge} onChange={(e) => setMerge(e.target.checked)} />
          Merge the LoRA adapter into the base weights (faster per request; shares no base memory)
        </label>
      ) : null}
      {run ? <GateStatusNote projectId={projectId} runId={run.id} /> : null}
      {blocked ? (
        <div className="stack-sm">
          <label className="checkbox">
            <input type="checkbox" checked={override} onChange={(e) => setOverride(e.target.checked)} />
            Deploy anyway: override the gate (recorded in the audit log)
          </label>
          {override ? (
            <Field label="Why" errors={fieldError(create.error, "override_reason")}>
              <input className="input" value={overrideReason} onChange={(e) => setOverrideReason(e.target.value)} />
            </Field>
          ) : null}
        </div>
      ) : null}
      <InlineError error={errorBesideButton(create.error, ["run", "checkpoint", "name", "runtime", "gguf_type", "precision", "override_reason"])} />
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!run || !modelName || (blocked && !override)}>
          Deploy
        </Button>
      </div>
    </form>
  );
}
