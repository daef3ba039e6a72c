import { fieldError } from "../../../api/client";
import type { KnowledgeOptionsInfo } from "../../../api/types";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";
import { useKnowledgeOptions } from "../api/knowledge";
import { TeacherFields, teacherUrl, type TeacherDraft } from "./TeacherFields";

/** What the form holds; `qaOption` turns it into the import's `qa` option. */
export interface QADraft extends TeacherDraft {
  questionsPerChunk: string;
}

export const EMPTY_QA: QADraft = { baseUrl: "", model: "", questionsPerChunk: "" };

/** The `qa` import option: the teacher (the first allowed one unless chosen) and the questions per chunk when given. */
export function qaOption(draft: QADraft, info: KnowledgeOptionsInfo | undefined): Record<string, unknown> {
  return {
    base_url: teacherUrl(draft, info),
    model: draft.model,
    ...(draft.questionsPerChunk !== "" ? { questions_per_chunk: Number(draft.questionsPerChunk) } : {}),
  };
}

/** The qa recipe's teacher (the same picker as the knowledge recipe's) and how many pairs it writes per chunk. */
export function QAOptionsForm({ value, onChange, error }: { value: QADraft; onChange: (draft: QADraft) => void; error: unknown }) {
  const info = useKnowledgeOptions(true);
  return (
    <div className="stack-sm" aria-label="Question and answer recipe">
      <p className="small muted">
        A teacher model is asked once per chunk for question and answer pairs. A larger teacher writes better pairs: the platform&apos;s own small
        deployments work offline, a 7B+ model on an allowed server writes far better ones.
      </p>
      <InlineError error={info.error} />
      <div className="form-grid">
        <TeacherFields value={value} onChange={(teacher) => onChange({ ...value, ...teacher })} error={error} field="options.qa" />
        <Field label="Questions per chunk" errors={fieldError(error, "options.qa.questions_per_chunk")} help="Default 3">
          <input className="input" type="number" min={1} max={20} value={value.questionsPerChunk} onChange={(e) => onChange({ ...value, questionsPerChunk: e.target.value })} />
        </Field>
      </div>
    </div>
  );
}
