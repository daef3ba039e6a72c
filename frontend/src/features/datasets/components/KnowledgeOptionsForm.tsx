import { fieldError } from "../../../api/client";
import type { KnowledgeOptionsInfo, KnowledgePreviewResult } from "../../../api/types";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";
import { useKnowledgeOptions } from "../api/knowledge";
import { TeacherFields, teacherUrl, type TeacherDraft } from "./TeacherFields";

const PROMPTS = ["facts", "questions", "answers", "restatements"] as const;
type PromptName = (typeof PROMPTS)[number];

/** What the form holds; `knowledgeOption` turns it into the import's `knowledge` option. */
export interface KnowledgeDraft extends TeacherDraft {
  knobs: Record<string, string>;
  prompts: Partial<Record<PromptName, string>>;
  gapFills?: boolean; // unset: the server's default
}

export const EMPTY_KNOWLEDGE: KnowledgeDraft = { baseUrl: "", model: "", knobs: {}, prompts: {} };

/** The `knowledge` import option: the teacher (the first allowed one unless chosen), the knobs given, the prompts edited. */
export function knowledgeOption(draft: KnowledgeDraft, info: KnowledgeOptionsInfo | undefined): Record<string, unknown> {
  const numbers = Object.fromEntries(Object.entries(draft.knobs).filter(([, v]) => v !== "").map(([k, v]) => [k, Number(v)]));
  const edited = Object.fromEntries(Object.entries(draft.prompts).filter(([name, text]) => text && text !== info?.prompts[name as PromptName]));
  return {
    base_url: teacherUrl(draft, info),
    model: draft.model,
    ...numbers,
    ...(draft.gapFills === undefined ? {} : { gap_fills: draft.gapFills }),
    ...(Object.keys(edited).length ? { prompts: edited } : {}),
  };
}

/** The knowledge recipe's teacher and knobs. */
export function KnowledgeOptionsForm({ value, onChange, error }: { value: KnowledgeDraft; onChange: (draft: KnowledgeDraft) => void; error: unknown }) {
  const info = useKnowledgeOptions(true);
  const { knobs, prompts } = value;
  const setKnobs = (next: Record<string, string>) => onChange({ ...value, knobs: next });
  const setPrompts = (next: Partial<Record<PromptName, string>>) => onChange({ ...value, prompts: next });

  const knob = (name: string, label: string, step = "1") => (
    <Field label={label} errors={fieldError(error, `options.knowledge.${name}`)} help={`Default ${String(info.data?.defaults[name as keyof typeof info.data.defaults] ?? "")}`}>
      <input className="input" type="number" step={step} min={0} value={knobs[name] ?? ""} onChange={(e) => setKnobs({ ...knobs, [name]: e.target.value })} />
    </Field>
  );
  return (
    <div className="stack-sm" aria-label="Knowledge recipe">
      <p className="small muted">
        A teacher model lists each chunk&apos;s facts, writes several questions per fact and answers them from the chunk; answers that the chunk
        does not support are dropped. One more question per fact is kept out of training as a fact check (an eval set). A larger teacher writes
        better data: the platform&apos;s own small deployments work offline, a 7B+ model on an allowed server writes far better questions.
      </p>
      <InlineError error={info.error} />
      <div className="form-grid">
        <TeacherFields value={value} onChange={(teacher) => onChange({ ...value, ...teacher })} error={error} field="options.knowledge" />
        {knob("facts_per_chunk", "Facts per chunk")}
        {knob("questions_per_fact", "Questions per fact")}
        {knob("restatements_per_chunk", "Restatements per chunk")}
        {knob("temperature", "Temperature", "0.1")}
        {knob("concurrency", "Chunks at once")}
        {knob("token_budget", "Teacher token budget")}
      </div>
      <label className="checkbox small">
        <input type="checkbox" checked={value.gapFills ?? info.data?.defaults.gap_fills ?? true} onChange={(e) => onChange({ ...value, gapFills: e.target.checked })} /> Gap-fill
        rows: each fact again with its key terms blanked out (no teacher call; they help most when a small teacher&apos;s questions miss their fact)
      </label>
      <details>
        <summary>Teacher prompts</summary>
        {PROMPTS.map((name) => (
          <Field key={name} label={`${name.charAt(0).toUpperCase()}${name.slice(1)} prompt`} errors={fieldError(error, `options.knowledge.prompts.${name}`)}>
            <textarea className="input" rows={4} value={prompts[name] ?? info.data?.prompts[name] ?? ""} onChange={(e) => setPrompts({ ...prompts, [name]: e.target.value })} />
          </Field>
        ))}
      </details>
    </div>
  );
}

/** What a dry run made: the estimate for the whole import, the rows kept and dropped, the fact-check questions. */
export function KnowledgePreview({ preview }: { preview: KnowledgePreviewResult }) {
  const stats = preview.stats as { facts?: number; rows_dropped?: number; answers_from_fact?: number; gap_fills?: number; teacher_tokens?: number; dropped?: { reason: string; text: string }[]; failures?: { reason: string }[] };
  const { estimate } = preview;
  return (
    <div className="stack-sm card" aria-label="Dry run">
      <p className="small">
        The whole import: {estimate.chunks} chunks, about {estimate.teacher_calls} teacher calls and {estimate.teacher_tokens.toLocaleString()} tokens, at
        most {estimate.training_rows_at_most} rows. This dry run: {stats.facts ?? 0} facts, {preview.rows.length} rows kept
        {stats.answers_from_fact ? ` (${stats.answers_from_fact} answered by their fact)` : ""}
        {stats.gap_fills ? `, ${stats.gap_fills} of them gap fills` : ""}, {stats.rows_dropped ?? 0} teacher replies dropped,{" "}
        {stats.teacher_tokens ?? 0} teacher tokens.
      </p>
      <table className="table">
        <thead>
          <tr>
            <th>Question</th>
            <th>Answer</th>
            <th>Fact</th>
          </tr>
        </thead>
        <tbody>
          {(preview.rows as { instruction: string; output: string; metadata: { fact?: string } }[]).map((row, i) => (
            <tr key={i}>
              <td>{row.instruction}</td>
              <td>{row.output}</td>
              <td className="muted small">{row.metadata.fact}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {stats.dropped?.length ? (
        <ul className="small" aria-label="Dropped">
          {stats.dropped.map((d, i) => (
            <li key={i}>
              Dropped: {d.text} — {d.reason}
            </li>
          ))}
        </ul>
      ) : null}
      {stats.failures?.length ? (
        <ul className="small" aria-label="Failed chunks">
          {stats.failures.map((f, i) => (
            <li key={i}>Chunk failed: {f.reason}</li>
          ))}
        </ul>
      ) : null}
      <p className="small muted">Fact check (held out of training): {(preview.heldout as { input: string }[]).map((h) => h.input).join(" · ")}</p>
    </div>
  );
}
