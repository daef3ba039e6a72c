import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import { useDeployments } from "../../../api/list-deployments";
import { useRuns } from "../../../api/list-runs";
import type { EvaluationTargetRequest, Gate } from "../../../api/types";
import { StatusBadge } from "../../../components/Badge";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { Field } from "../../../components/Field";
import { RecordTable } from "../../../components/RecordTable";
import { InlineError } from "../../../components/States";
import { formatDateTime } from "../../../lib/format";
import { useProjectId } from "../../../lib/use-project-id";
import { useCreateEvalSet, type VersionSource } from "../../../api/create-eval-set";
import { useCreateEvaluation } from "../api/create-evaluation";
import { useGate, useSetGate } from "../api/gates";
import { useEvalSets } from "../../../api/list-eval-sets";
import { useEvaluations } from "../api/list-evaluations";

const SCORERS = ["exact_match", "must_include", "rouge_l", "token_f1", "json_valid"] as const;

/** A target as the form holds it: "run:12", "base:12" or "deployment:4". */
function targetOf(value: string): EvaluationTargetRequest | null {
  const [kind, id] = value.split(":");
  if (!id) return null;
  return kind === "deployment" ? { kind: "deployment", deployment: Number(id) } : { kind: kind as "run" | "base", run: Number(id) };
}

function parseRows(text: string): unknown[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new Error(`Line ${i + 1} is not JSON: ${line.slice(0, 60)}`);
      }
    });
}

function NewEvalSet({ projectId }: { projectId: number }) {
  const create = useCreateEvalSet();
  const [name, setName] = useState("");
  const [kind, setKind] = useState<"rows" | "file" | "general">("rows");
  const [text, setText] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [parseError, setParseError] = useState<string | null>(null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setParseError(null);
    let source: VersionSource;
    try {
      source = kind === "rows" ? { kind, rows: parseRows(text) } : kind === "file" && file ? { kind, file } : { kind: "general" };
    } catch (error) {
      setParseError((error as Error).message);
      return;
    }
    create.mutate({ project: projectId, name, source }, { onSuccess: () => { setName(""); setText(""); } });
  };
  return (
    <form className="stack" onSubmit={submit} aria-label="New eval set" noValidate>
      <div className="form-grid">
        <Field label="Name" errors={fieldError(create.error, "name")}>
          <input className="input" value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Rows from">
          <select className="select" value={kind} onChange={(e) => setKind(e.target.value as typeof kind)}>
            <option value="rows">Pasted JSONL rows</option>
            <option value="file">A JSONL or CSV file</option>
            <option value="general">The general set (forgetting check)</option>
          </select>
        </Field>
      </div>
      {kind === "rows" ? (
        <Field label="Rows" help='One JSON object a line: {"input": "...", "reference": "...", "must_include": ["..."], "tags": ["..."]}' errors={fieldError(create.error, "rows")}>
          <textarea className="textarea mono" rows={6} value={text} onChange={(e) => setText(e.target.value)} />
        </Field>
      ) : null}
      {kind === "file" ? (
        <Field label="File">
          <input type="file" accept=".jsonl,.csv,.json" onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
        </Field>
      ) : null}
      <InlineError error={parseError ? new Error(parseError) : errorBesideButton(create.error, ["name", "rows"])} />
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!name || (kind === "file" && !file)}>
          Create eval set
        </Button>
      </div>
    </form>
  );
}

function NewEvaluation({ projectId }: { projectId: number }) {
  const sets = resultsOf(useEvalSets(projectId).data).filter((s) => s.latest_version);
  const runs = resultsOf(useRuns(projectId).data).filter((r) => r.status === "succeeded");
  const deployments = resultsOf(useDeployments({ projectId }).data).filter((d) => d.status === "ready");
  const create = useCreateEvaluation();
  const [setId, setSetId] = useState<number | null>(null);
  const [targets, setTargets] = useState<string[]>(["", ""]);
  const [scorers, setScorers] = useState<string[]>(["must_include", "rouge_l"]);
  const [judge, setJudge] = useState("");
  const [judgeMode, setJudgeMode] = useState<"pairwise" | "pointwise">("pairwise");
  const chosenSet = sets.find((s) => s.id === setId) ?? sets[0];
  const chosen = targets.map(targetOf).filter((t): t is EvaluationTargetRequest => t !== null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!chosenSet?.latest_version) return;
    create.mutate({
      eval_set_version: chosenSet.latest_version,
      targets: chosen,
      scorers: scorers.map((name) => ({ name: name as (typeof SCORERS)[number] })),
      judge: judge ? { mode: judgeMode, target: { kind: "deployment", deployment: Number(judge) } } : null,
    });
  };
  if (!sets.length) return <p className="muted">Create an eval set first.</p>;
  const options = (
    <>
      <option value="">—</option>
      {runs.map((r) => (
        <option key={`base:${r.id}`} value={`base:${r.id}`}>
          base model of {r.name} ({r.base_model})
        </option>
      ))}
      {runs.map((r) => (
        <option key={`run:${r.id}`} value={`run:${r.id}`}>
          run {r.name}
        </option>
      ))}
      {deployments.map((d) => (
        <option key={`deployment:${d.id}`} value={`deployment:${d.id}`}>
          deployed: {d.name}
        </option>
      ))}
    </>
  );
  return (
    <form className="stack" onSubmit={submit} aria-label="New evaluation" noValidate>
      <div className="form-grid">
        <Field label="Eval set" errors={fieldError(create.error, "eval_set_version")}>
          <select className="select" value={chosenSet?.id ?? ""} onChange={(e) => setSetId(Number(e.target.value))}>
            {sets.map((s) => (
              <option key={s.id} value={s.id}>
                {s.name}
              </option>
            ))}
          </select>
        </Field>
        {targets.map((value, i) => (
          <Field key={i} label={i === 0 ? "Target 1 (baseline)" : `Target ${i + 1}`} errors={fieldError(create.error, `targets.${i}.run`)}>
            <select className="select" aria-label={`Target ${i + 1}`} value={value} onChange={(e) => setTargets(targets.map((t, j) => (j === i ? e.target.value : t)))}>
              {options}
            </select>
          </Field>
        ))}
      </div>
      {targets.length < 4 ? (
        <div>
          <Button size="sm" onClick={() => setTargets([...targets, ""])}>
            Add a target
          </Button>
        </div>
      ) : null}
      <fieldset className="row" aria-label="Scorers">
        {SCORERS.map((name) => (
          <label key={name} className="checkbox">
            <input type="checkbox" checked={scorers.includes(name)} onChange={(e) => setScorers(e.target.checked ? [...scorers, name] : scorers.filter((s) => s !== name))} />
            {name}
          </label>
        ))}
      </fieldset>
      <div className="form-grid">
        <Field label="LLM judge" help="A ready deployment grades the answers." errors={fieldError(create.error, "judge")}>
          <select className="select" aria-label="Judge" value={judge} onChange={(e) => setJudge(e.target.value)}>
            <option value="">No judge</option>
            {deployments.map((d) => (
              <option key={d.id} value={d.id}>
                {d.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Judge mode">
          <select className="select" aria-label="Judge mode" value={judgeMode} onChange={(e) => setJudgeMode(e.target.value as typeof judgeMode)}>
            <option value="pairwise">Pairwise (both orders, ties allowed)</option>
            <option value="pointwise">Pointwise (1-5 against the reference)</option>
          </select>
        </Field>
      </div>
      <InlineError error={errorBesideButton(create.error, ["eval_set_version", "judge", "targets.0.run", "targets.1.run"])} />
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!chosen.length}>
          Evaluate
        </Button>
        {create.data ? <Link to={`/projects/${projectId}/evals/${create.data.id}`}>Open the evaluation</Link> : null}
      </div>
    </form>
  );
}

/** What decides a gate, in words. */
export function gateRule(gate: Pick<Gate, "scorer" | "judge" | "threshold" | "max_drop">, setName: string): string {
  const mode = gate.judge?.mode;
  const rule =
    mode === "pairwise"
      ? `the run's win rate against the deployed model, by a pairwise judge on ${setName}, reaches ${gate.threshold}`
      : `${mode === "pointwise" ? "a judge's mean score (1-5)" : gate.scorer?.name} on ${setName} reaches ${gate.threshold}`;
  return `${rule}${gate.max_drop != null ? `, and no worse than the deployed model by more than ${gate.max_drop}` : ""}.`;
}

function GateCard({ projectId }: { projectId: number }) {
  const gate = useGate(projectId);
  const sets = resultsOf(useEvalSets(projectId).data);
  const deployments = resultsOf(useDeployments({ projectId }).data).filter((d) => d.status === "ready");
  const save = useSetGate();
  const [setId, setSetId] = useState("");
  const [decider, setDecider] = useState("must_include");
  const [judge, setJudge] = useState("");
  const [threshold, setThreshold] = useState("0.5");
  const [maxDrop, setMaxDrop] = useState("");
  const judgeMode = decider === "judge:pointwise" ? "pointwise" : decider === "judge:pairwise" ? "pairwise" : null;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    save.mutate({
      project: projectId,
      eval_set: Number(setId || sets[0]?.id),
      ...(judgeMode
        ? { scorer: null, judge: { mode: judgeMode, target: { kind: "deployment", deployment: Number(judge || deployments[0]?.id) } } }
        : { scorer: { name: decider as (typeof SCORERS)[number] } }),
      threshold: Number(threshold),
      max_drop: maxDrop === "" || judgeMode === "pairwise" ? null : Number(maxDrop),
    });
  };
  const current = gate.data;
  return (
    <Card title="Gate: deploy only if">
      {current && current.enabled ? (
        <p>{gateRule(current, sets.find((s) => s.id === current.eval_set)?.name ?? `eval set ${current.eval_set}`)}</p>
      ) : (
        <p className="muted">No gate: any succeeded run may be deployed.</p>
      )}
      <form className="form-grid" onSubmit={submit} aria-label="Gate" noValidate>
        <Field label="Eval set" errors={fieldError(save.error, "eval_set")}>
          <select className="select" value={setId} onChange={(e) => setSetId(e.target.value)}>
            {sets.map((s) => (
              <option key={s.id} value={s.id}>
                {s.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Decided by" help={judgeMode === "pairwise" ? "Threshold: the run's win rate against the deployed model (0-1, a tie counts half)." : judgeMode ? "Threshold: the mean score, 1 to 5." : undefined}>
          <select className="select" value={decider} onChange={(e) => setDecider(e.target.value)}>
            {SCORERS.map((name) => (
              <option key={name}>{name}</option>
            ))}
            <option value="judge:pointwise">a judge's score (pointwise)</option>
            <option value="judge:pairwise">a judge: run against the deployed model (pairwise)</option>
          </select>
        </Field>
        {judgeMode ? (
          <Field label="Judge model" errors={fieldError(save.error, "judge")}>
            <select className="select" value={judge} onChange={(e) => setJudge(e.target.value)}>
              {deployments.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.name}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        <Field label="Threshold" errors={fieldError(save.error, "threshold")}>
          <input className="input" inputMode="decimal" value={threshold} onChange={(e) => setThreshold(e.target.value)} />
        </Field>
        {judgeMode !== "pairwise" ? (
          <Field label="Max drop against the deployed model" help="Empty: not compared." errors={fieldError(save.error, "max_drop")}>
            <input className="input" inputMode="decimal" value={maxDrop} onChange={(e) => setMaxDrop(e.target.value)} />
          </Field>
        ) : null}
        <InlineError error={errorBesideButton(save.error, ["eval_set", "threshold", "max_drop", "judge"])} />
        <div className="form-actions">
          <Button type="submit" busy={save.isPending} disabled={!sets.length || (judgeMode !== null && !deployments.length)}>
            Save the gate
          </Button>
        </div>
      </form>
    </Card>
  );
}

export function EvalsPage() {
  const projectId = useProjectId();
  const evaluations = useEvaluations(projectId);
  return (
    <>
      <PageHeader title="Evaluations" description="Eval sets answered by runs, base models and deployments, side by side, scored and judged." />
      <div className="stack">
        <div className="grid-2">
          <Card title="New evaluation">
            <NewEvaluation projectId={projectId} />
          </Card>
          <Card title="New eval set">
            <NewEvalSet projectId={projectId} />
          </Card>
        </div>
        <Card title="Evaluations" bodyClassName="">
          <RecordTable
            query={evaluations}
            label="Evaluations"
            empty="No evaluations yet"
            columns={[
              {
                header: "Evaluation",
                cell: (e) => (
                  <>
                    <Link to={`/projects/${projectId}/evals/${e.id}`}>{e.name || `Evaluation ${e.id}`}</Link>
                    {e.gate_passed != null ? <span className="muted"> · {e.gate_passed ? "passes the gate" : "fails the gate"}</span> : null}
                  </>
                ),
              },
              { header: "Targets", cell: (e) => e.targets.map((t) => t.label).join(" vs ") },
              { header: "Status", cell: (e) => <StatusBadge status={e.status} /> },
              { header: "Rows", cell: (e) => `${e.rows_done}/${e.row_count}` },
              { header: "Started", cell: (e) => formatDateTime(e.created_at) },
            ]}
          />
        </Card>
        <GateCard projectId={projectId} />
      </div>
    </>
  );
}
