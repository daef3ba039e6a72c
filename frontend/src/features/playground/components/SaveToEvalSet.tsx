import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import type { ChatMessage, EvalSetVersion } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Dialog } from "../../../components/Dialog";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";
import { useAddVersion, useCreateEvalSet, type VersionSource } from "../../../api/create-eval-set";
import { useEvalSets } from "../../../api/list-eval-sets";

const NEW_SET = "new";

/** The conversation up to its last user message (what the row asks), and the answer given to it. */
export function promptAndAnswer(conversation: ChatMessage[]): { prompt: ChatMessage[]; answer: string } {
  const last = conversation.map((m) => m.role).lastIndexOf("user");
  return { prompt: conversation.slice(0, last + 1), answer: conversation[last + 1]?.role === "assistant" ? conversation[last + 1]!.content : "" };
}

/** "Save to eval set": the Playground's last prompt (and, if kept, its answer as reference and key
 * facts) becomes a row of a new set or the next version of an existing one. */
export function SaveToEvalSet({ projectId, deploymentId, conversation, disabled }: { projectId: number; deploymentId: number; conversation: ChatMessage[]; disabled: boolean }) {
  const [open, setOpen] = useState(false);
  const { prompt, answer } = promptAndAnswer(conversation);
  return (
    <>
      <Button onClick={() => setOpen(true)} disabled={disabled || prompt.length === 0}>
        Save to eval set
      </Button>
      <Dialog open={open} onClose={() => setOpen(false)} title="Save to eval set">
        {open ? <SaveForm projectId={projectId} deploymentId={deploymentId} prompt={prompt} answer={answer} /> : null}
      </Dialog>
    </>
  );
}

function SaveForm({ projectId, deploymentId, prompt, answer }: { projectId: number; deploymentId: number; prompt: ChatMessage[]; answer: string }) {
  const sets = resultsOf(useEvalSets(projectId).data);
  const create = useCreateEvalSet();
  const add = useAddVersion();
  const [setId, setSetId] = useState<string>("");
  const [name, setName] = useState("");
  const [keepAnswer, setKeepAnswer] = useState(answer !== "");
  const [reference, setReference] = useState(answer);
  const [facts, setFacts] = useState("");
  const [saved, setSaved] = useState<{ version: EvalSetVersion; name: string } | null>(null);
  const chosen = setId || (sets[0] ? String(sets[0].id) : NEW_SET);
  const mutation = chosen === NEW_SET ? create : add;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const mustInclude = facts.split("\n").map((f) => f.trim()).filter(Boolean);
    const source: VersionSource = {
      kind: "playground",
      row: { messages: prompt, reference: keepAnswer ? reference : null, deployment: deploymentId, ...(mustInclude.length ? { must_include: mustInclude } : {}) },
    };
    if (chosen === NEW_SET) create.mutate({ project: projectId, name, source }, { onSuccess: (version) => setSaved({ version, name }) });
    else add.mutate({ evalSetId: Number(chosen), source }, { onSuccess: (version) => setSaved({ version, name: sets.find((s) => String(s.id) === chosen)?.name ?? "" }) });
  };

  if (saved) {
    return (
      <p role="status">
        Saved: {saved.name} version {saved.version.number} now holds {saved.version.row_count} rows. <Link to={`/projects/${projectId}/evals`}>Evaluate with it</Link>
      </p>
    );
  }
  return (
    <form className="stack" onSubmit={submit} aria-label="Save to eval set" noValidate>
      <Field label="Prompt">
        <textarea className="textarea" rows={3} readOnly value={prompt.at(-1)?.content ?? ""} />
      </Field>
      <Field label="Eval set" help="An existing set gets a new version: its rows and this one.">
        <select className="select" value={chosen} onChange={(e) => setSetId(e.target.value)}>
          {sets.map((s) => (
            <option key={s.id} value={s.id}>
              {s.name}
            </option>
          ))}
          <option value={NEW_SET}>New eval set…</option>
        </select>
      </Field>
      {chosen === NEW_SET ? (
        <Field label="Name of the new set" errors={fieldError(create.error, "name")}>
          <input className="input" value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
      ) : null}
      <label className="checkbox">
        <input type="checkbox" checked={keepAnswer} onChange={(e) => setKeepAnswer(e.target.checked)} />
        Keep the answer as the reference
      </label>
      {keepAnswer ? (
        <Field label="Reference answer" errors={fieldError(mutation.error, "playground.reference")}>
          <textarea className="textarea" rows={4} value={reference} onChange={(e) => setReference(e.target.value)} />
        </Field>
      ) : null}
      <Field label="Must include" help="Key facts a right answer contains, one a line (optional)." errors={fieldError(mutation.error, "playground.must_include")}>
        <textarea className="textarea" rows={2} value={facts} onChange={(e) => setFacts(e.target.value)} />
      </Field>
      <InlineError error={errorBesideButton(mutation.error, ["name", "playground.reference", "playground.must_include"])} />
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={mutation.isPending} disabled={chosen === NEW_SET && !name.trim()}>
          Save
        </Button>
      </div>
    </form>
  );
}
