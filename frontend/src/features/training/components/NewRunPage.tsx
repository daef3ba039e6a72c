import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import type { Hyperparameter, TrainingMethod, TrainingOptions, TrainingRunRequest } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { Field } from "../../../components/Field";
import { ErrorState, InlineError, LoadingState } from "../../../components/States";
import { formatDuration, formatNumber } from "../../../lib/format";
import { useDebouncedValue } from "../../../lib/use-debounced-value";
import { isVersionBusy } from "../../../api/status";
import { useDatasets } from "../../../api/list-datasets";
import { useProjectVersions } from "../../../api/list-project-versions";
import { useProjectId } from "../../../lib/use-project-id";
import { useCreateRun } from "../api/create-run";
import { useRunEstimate } from "../api/estimate-run";
import { useConfigOptions } from "../../../api/get-config-options";
import { PRESET_SUMMARIES, formatConfigValue, hyperparameterLabel, isLoraOnly, parseConfigValue } from "../presets";

/** Reasons for a hyperparameter: the runs API names them config.<field>. */
function hyperparameterErrors(error: unknown, name: string): string[] | undefined {
  return fieldError(error, `config.${name}`);
}

function sentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1) + ".";
}

export function NewRunPage() {
  const options = useConfigOptions();
  if (options.isPending) return <LoadingState label="Loading the training options…" />;
  if (options.isError) return <ErrorState error={options.error} onRetry={() => void options.refetch()} />;
  return <NewRunForm options={options.data} />;
}

function NewRunForm({ options }: { options: TrainingOptions }) {
  const projectId = useProjectId();
  const [params] = useSearchParams();
  const versions = useProjectVersions(projectId);
  const datasets = useDatasets(projectId);
  const create = useCreateRun();
  const navigate = useNavigate();
  const [name, setName] = useState("");
  const [versionId, setVersionId] = useState<number | null>(params.get("version") ? Number(params.get("version")) : null);
  const [baseChoice, setBaseChoice] = useState(options.base_models[0]?.name ?? "custom");
  const [customBase, setCustomBase] = useState("");
  const [method, setMethod] = useState<TrainingMethod>("lora");
  const [preset, setPreset] = useState(options.presets.some((p) => p.name === "quick") ? "quick" : options.default_preset);
  // Raw text of the advanced fields the user touched; untouched ones follow the preset.
  const [overrides, setOverrides] = useState<Record<string, string>>({});

  const allVersions = resultsOf(versions.data);
  const readyVersions = allVersions.filter((v) => v.status === "ready");
  // A version still importing (the "Train on this version" link right after an upload) is offered
  // too: a run on it validates it first.
  const importing = allVersions.filter((v) => isVersionBusy(v.status) && v.id === versionId);
  const offered = [...readyVersions, ...importing];
  const datasetName = (id: number) => resultsOf(datasets.data).find((d) => d.id === id)?.name ?? `Dataset ${id}`;
  const selectedVersion = versionId ?? readyVersions[0]?.id ?? null;
  const baseModel = baseChoice === "custom" ? customBase.trim() : baseChoice;
  const resolved = options.presets.find((p) => p.name === preset)?.resolved[method] ?? {};
  const shownFields = options.hyperparameters.filter((f) => !isLoraOnly(f) || method === "lora");

  const hyperparameters: Record<string, unknown> = {};
  for (const field of shownFields) {
    const raw = overrides[field.name];
    if (raw === undefined) continue;
    if (raw.trim() === "" && !field.nullable) continue; // emptied: the preset's value
    const value = parseConfigValue(field, raw);
    if (JSON.stringify(value) !== JSON.stringify(resolved[field.name] ?? null)) hyperparameters[field.name] = value;
  }

  const input: TrainingRunRequest = {
    project: projectId,
    name: name.trim() || `${preset}-${method}-${new Date().toISOString().slice(5, 16).replace("T", "-")}`,
    dataset_version: selectedVersion ?? 0,
    base_model: baseModel,
    method,
    config: { preset, ...hyperparameters },
  };
  // The estimate tokenizes the whole version: ask once the form has settled, not on every key.
  const estimateInput = useDebouncedValue({ ...input, name: "estimate" }, 600);
  const estimate = useRunEstimate(estimateInput, selectedVersion !== null && Boolean(estimateInput.base_model));

  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(input, { onSuccess: (run) => void navigate(`/projects/${projectId}/runs/${run.id}`) });
  };

  if (versions.isPending) return <LoadingState label="Loading dataset versions…" />;

  const fieldValue = (field: Hyperparameter): string => overrides[field.name] ?? formatConfigValue(resolved[field.name]);
  const change = (field: Hyperparameter, raw: string) => setOverrides({ ...overrides, [field.name]: raw });
  const advancedErrors = shownFields.some((f) => hyperparameterErrors(create.error, f.name));
  const presetInfo = options.presets.find((p) => p.name === preset);
  const presetChanges = Object.entries(presetInfo?.overrides ?? {})
    .map(([key, value]) => `${hyperparameterLabel(key).toLowerCase()} ${formatConfigValue(value)}`)
    .join(", ");

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
              help={offered.length ? "Validated versions (one still importing is validated first)." : "No validated version yet: import data first."}
            >
              <select className="select" value={selectedVersion ?? ""} onChange={(e) => setVersionId(Number(e.target.value))}>
                {offered.length === 0 ? <option value="">No ready versions</option> : null}
                {offered.map((v) => (
                  <option key={v.id} value={v.id}>
                    {datasetName(v.dataset)} v{v.number} {v.status === "ready" ? `(${formatNumber(v.row_count)} rows)` : `(${v.status})`}
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Base model" errors={baseChoice === "custom" ? undefined : fieldError(create.error, "base_model")} help="A preset or a model this server offers, a Hugging Face id, or run:<id> / checkpoint:<id> of this team.">
              <select className="select" value={baseChoice} onChange={(e) => setBaseChoice(e.target.value)}>
                {options.base_models.map((m) => (
                  <option key={m.name} value={m.name}>
                    {m.hf_id ? `${m.name} (${m.hf_id}, offline)` : m.name}
                  </option>
                ))}
                <option value="custom">Hugging Face id, run or checkpoint…</option>
              </select>
            </Field>
            {baseChoice === "custom" ? (
              <Field label="Model id" errors={fieldError(create.error, "base_model")}>
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
                {options.presets.map((p) => (
                  <label key={p.name}>
                    <input
                      type="radio"
                      name="preset"
                      value={p.name}
                      checked={preset === p.name}
                      onChange={() => {
                        setPreset(p.name);
                        setOverrides({});
                      }}
                    />
                    {hyperparameterLabel(p.name)}
                  </label>
                ))}
              </div>
              <span className="field-help">
                {PRESET_SUMMARIES[preset] ?? ""} {presetChanges ? `Changes from the defaults: ${presetChanges}.` : ""}
              </span>
              {fieldError(create.error, "config.preset") ? <span className="field-error">{fieldError(create.error, "config.preset")!.join(" ")}</span> : null}
            </div>
            <details open={advancedErrors || undefined}>
              <summary style={{ cursor: "pointer", fontWeight: 600 }}>Advanced hyperparameters</summary>
              <p className="small muted">Values shown are what this preset gives a {method === "lora" ? "LoRA" : "full"} run; change any of them.</p>
              <div className="form-grid">
                {shownFields.map((field) => (
                  <Field key={field.name} label={hyperparameterLabel(field.name)} help={sentence(field.help)} errors={hyperparameterErrors(create.error, field.name)}>
                    {field.type === "choice" || field.type === "bool" ? (
                      <select className="select" name={field.name} value={fieldValue(field)} onChange={(e) => change(field, e.target.value)}>
                        {(field.type === "bool" ? ["true", "false"] : field.choices).map((c) => (
                          <option key={c} value={c}>
                            {c === "true" ? "yes" : c === "false" ? "no" : c}
                          </option>
                        ))}
                      </select>
                    ) : (
                      <input
                        className="input"
                        name={field.name}
                        type={field.type === "int" || field.type === "float" ? "number" : "text"}
                        step={field.type === "int" ? 1 : "any"}
                        value={fieldValue(field)}
                        placeholder={field.nullable ? "(derived)" : undefined}
                        onChange={(e) => change(field, e.target.value)}
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
            <div aria-live="polite" className="small" data-testid="run-estimate">
              {estimate.data ? (
                <span>
                  Estimate: {formatNumber(estimate.data.steps)} steps, {formatNumber(estimate.data.tokens)} trained tokens
                  {estimate.data.seconds !== null ? (
                    <>
                      , about <strong>{formatDuration(estimate.data.seconds)}</strong> on this installation's workers ({estimate.data.basis}).
                    </>
                  ) : (
                    <>; no duration yet: {estimate.data.basis}.</>
                  )}
                </span>
              ) : estimate.isFetching ? (
                <span className="muted">Estimating…</span>
              ) : estimate.isError ? (
                <span className="muted">No estimate: {estimate.error.message}</span>
              ) : null}
            </div>
            <InlineError error={errorBesideButton(create.error, ["name", "dataset_version", "base_model", "method", "config.preset", ...shownFields.map((f) => `config.${f.name}`)])} />
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
