import { useMemo, useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { Field } from "../../../components/Field";
import { InlineError, LoadingState } from "../../../components/States";
import { formatDuration, formatNumber } from "../../../lib/format";
import { useDatasets } from "../../datasets/api/list-datasets";
import { useProjectVersions } from "../../datasets/api/list-project-versions";
import { useProjectId } from "../../projects/use-project-id";
import { useCreateRun, type CreateRunInput } from "../api/create-run";
import { useRunEstimate } from "../api/estimate-run";
import { ADVANCED_FIELDS, BASE_MODEL_PRESETS, TRAINING_PRESETS, type HyperparameterField } from "../presets";

/** Reasons for a hyperparameter, whichever nesting the server used for its field name. */
function hyperparameterErrors(error: unknown, name: string): string[] | undefined {
  return fieldError(error, `config.${name}`) ?? fieldError(error, name);
}

function parseValue(field: HyperparameterField, raw: string): unknown {
  if (field.kind === "int" || field.kind === "float") return Number(raw);
  if (field.kind === "bool") return raw === "true";
  if (field.kind === "text" && field.name === "lora_target_modules") {
    return raw.split(",").map((s) => s.trim()).filter(Boolean);
  }
  return raw;
}

export function NewRunPage() {
  const projectId = useProjectId();
  const [params] = useSearchParams();
  const versions = useProjectVersions(projectId);
  const datasets = useDatasets(projectId);
  const create = useCreateRun();
  const navigate = useNavigate();
  const [name, setName] = useState("");
  const [versionId, setVersionId] = useState<number | null>(params.get("version") ? Number(params.get("version")) : null);
  const [baseChoice, setBaseChoice] = useState(BASE_MODEL_PRESETS[0]!.value);
  const [customBase, setCustomBase] = useState("");
  const [method, setMethod] = useState<"lora" | "full">("lora");
  const [preset, setPreset] = useState("quick");
  // Raw text of the advanced fields the user touched; untouched ones follow the preset.
  const [overrides, setOverrides] = useState<Record<string, string>>({});

  const readyVersions = resultsOf(versions.data).filter((v) => v.status === "ready");
  const datasetName = (id: number) => resultsOf(datasets.data).find((d) => d.id === id)?.name ?? `Dataset ${id}`;
  const selectedVersion = versionId ?? readyVersions[0]?.id ?? null;
  const baseModel = baseChoice === "custom" ? customBase.trim() : baseChoice;
  const presetValues = TRAINING_PRESETS[preset]?.values ?? {};

  const hyperparameters = useMemo(() => {
    const out: Record<string, unknown> = {};
    for (const field of ADVANCED_FIELDS) {
      if (!(field.name in overrides)) continue;
      if (field.lora && method !== "lora") continue;
      if ((overrides[field.name] ?? "") === "") continue; // empty: the preset's or engine's default
      out[field.name] = parseValue(field, overrides[field.name] ?? "");
    }
    return out;
  }, [overrides, method]);

  const input: CreateRunInput = {
    project: projectId,
    name: name.trim() || `${preset}-${method}-${new Date().toISOString().slice(5, 16).replace("T", "-")}`,
    dataset_version: selectedVersion ?? 0,
    base_model: baseModel,
    method,
    config: { preset, ...hyperparameters },
  };
  const estimate = useRunEstimate(input, selectedVersion !== null && Boolean(baseModel));

  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(input, { onSuccess: (run) => void navigate(`/projects/${projectId}/runs/${run.id}`) });
  };

  if (versions.isPending) return <LoadingState label="Loading dataset versions…" />;

  const fieldValue = (field: HyperparameterField): string => {
    if (field.name in overrides) return overrides[field.name] ?? "";
    const v = presetValues[field.name];
    return v === undefined ? "" : String(v);
  };
  const shownFields = ADVANCED_FIELDS.filter((f) => !f.lora || method === "lora");
  const advancedErrors = shownFields.some((f) => hyperparameterErrors(create.error, f.name));

  return (
    <>
      <PageHeader
        breadcrumbs={<Link to={`/projects/${projectId}/runs`}>Training runs</Link>}
        title="New training run"
        description="Pick the data, the base model and a preset; open Advanced to change any hyperparameter."
      />
      <form onSubmit={submit} noValidate className="stack" style={{ maxWidth: 980 }}>
        <Card title="What to train">
          <div className="form-grid">
            <Field label="Run name" errors={fieldError(create.error, "name")} help="Optional; a name from the preset is used otherwise.">
              <input className="input" value={name} onChange={(e) => setName(e.target.value)} maxLength={100} placeholder={input.name} />
            </Field>
            <Field
              label="Dataset version"
              errors={fieldError(create.error, "dataset_version")}
              help={readyVersions.length ? "Only validated versions are listed." : "No validated version yet: import data first."}
            >
              <select className="select" value={selectedVersion ?? ""} onChange={(e) => setVersionId(Number(e.target.value))}>
                {readyVersions.length === 0 ? <option value="">No ready versions</option> : null}
                {readyVersions.map((v) => (
                  <option key={v.id} value={v.id}>
                    {datasetName(v.dataset)} v{v.number} ({formatNumber(v.row_count)} rows)
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Base model" errors={baseChoice === "custom" ? undefined : fieldError(create.error, "base_model")} help="A preset, a Hugging Face id or a local folder.">
              <select className="select" value={baseChoice} onChange={(e) => setBaseChoice(e.target.value)}>
                {BASE_MODEL_PRESETS.map((p) => (
                  <option key={p.value} value={p.value}>
                    {p.label}
                  </option>
                ))}
                <option value="custom">Hugging Face id or local path…</option>
              </select>
            </Field>
            {baseChoice === "custom" ? (
              <Field label="Model id or path" errors={fieldError(create.error, "base_model")}>
                <input className="input mono" value={customBase} onChange={(e) => setCustomBase(e.target.value)} placeholder="HuggingFaceTB/SmolLM2-360M-Instruct" />
              </Field>
            ) : null}
          </div>
          {versions.isError ? <InlineError error={versions.error} /> : null}
        </Card>
        <Card title="How to train">
          <div className="stack">
            <div className="field">
              <span className="field-label" id="method-label">
                Method
              </span>
              <div className="segmented" role="radiogroup" aria-labelledby="method-label">
                {(["lora", "full"] as const).map((m) => (
                  <label key={m}>
                    <input type="radio" name="method" value={m} checked={method === m} onChange={() => setMethod(m)} />
                    {m === "lora" ? "LoRA adapter" : "Full fine-tune"}
                  </label>
                ))}
              </div>
              <span className="field-help">
                {method === "lora" ? "Trains small adapter matrices: fast, small files, base weights shared when serving." : "Updates every weight: slower and larger, sometimes better."}
              </span>
              {fieldError(create.error, "method") ? <span className="field-error">{fieldError(create.error, "method")!.join(" ")}</span> : null}
            </div>
            <div className="field">
              <span className="field-label" id="preset-label">
                Preset
              </span>
              <div className="segmented" role="radiogroup" aria-labelledby="preset-label">
                {Object.entries(TRAINING_PRESETS).map(([key, p]) => (
                  <label key={key}>
                    <input
                      type="radio"
                      name="preset"
                      value={key}
                      checked={preset === key}
                      onChange={() => {
                        setPreset(key);
                        setOverrides({});
                      }}
                    />
                    {p.label}
                  </label>
                ))}
              </div>
              <span className="field-help">{TRAINING_PRESETS[preset]?.help}</span>
              {fieldError(create.error, "config.preset") ? <span className="field-error">{fieldError(create.error, "config.preset")!.join(" ")}</span> : null}
            </div>
            <details open={advancedErrors || undefined}>
              <summary style={{ cursor: "pointer", fontWeight: 600 }}>Advanced hyperparameters</summary>
              <p className="small muted">Values shown are the preset's; change any of them. Empty means the engine's default.</p>
              <div className="form-grid">
                {shownFields.map((field) => (
                  <Field key={field.name} label={field.label} help={field.help} errors={hyperparameterErrors(create.error, field.name)}>
                    {field.kind === "choice" ? (
                      <select className="select" value={fieldValue(field)} onChange={(e) => setOverrides({ ...overrides, [field.name]: e.target.value })}>
                        <option value="">(default)</option>
                        {field.choices?.map((c) => (
                          <option key={c} value={c}>
                            {c}
                          </option>
                        ))}
                      </select>
                    ) : field.kind === "bool" ? (
                      <select className="select" value={fieldValue(field)} onChange={(e) => setOverrides({ ...overrides, [field.name]: e.target.value })}>
                        <option value="">(default)</option>
                        <option value="true">yes</option>
                        <option value="false">no</option>
                      </select>
                    ) : (
                      <input
                        className="input"
                        name={field.name}
                        type={field.kind === "text" ? "text" : "number"}
                        min={field.min}
                        step={field.step ?? (field.kind === "int" ? 1 : "any")}
                        value={fieldValue(field)}
                        onChange={(e) => setOverrides({ ...overrides, [field.name]: e.target.value })}
                      />
                    )}
                  </Field>
                ))}
              </div>
            </details>
          </div>
        </Card>
        <Card>
          <div className="stack">
            <div aria-live="polite" className="small">
              {estimate.data ? (
                <span>
                  Estimate: {formatNumber(estimate.data.steps)} steps, {formatNumber(estimate.data.tokens)} tokens, about{" "}
                  <strong>{formatDuration(estimate.data.seconds)}</strong> on this installation's workers
                  {estimate.data.basis ? ` (${estimate.data.basis})` : ""}.
                </span>
              ) : estimate.isFetching ? (
                <span className="muted">Estimating duration…</span>
              ) : estimate.isError ? (
                <span className="muted">No estimate: {estimate.error.message}</span>
              ) : null}
            </div>
            <InlineError error={errorBesideButton(create.error, ["name", "dataset_version", "base_model", "method", "preset", "config.preset", ...shownFields.flatMap((f) => [f.name, `config.${f.name}`])])} />
            <div className="form-actions">
              <Button type="submit" variant="primary" busy={create.isPending} disabled={selectedVersion === null || !baseModel}>
                Start training
              </Button>
              <Link to={`/projects/${projectId}/runs`}>Cancel</Link>
            </div>
          </div>
        </Card>
      </form>
    </>
  );
}
