import { fieldError } from "../../../api/client";
import { useDeployments } from "../../../api/list-deployments";
import type { KnowledgeOptionsInfo } from "../../../api/types";
import { Field } from "../../../components/Field";
import { useProjectId } from "../../../lib/use-project-id";
import { useKnowledgeOptions } from "../api/knowledge";

/** The model that writes training data (the qa and knowledge recipes): a server on the allow-list and a model there. */
export interface TeacherDraft {
  baseUrl: string;
  model: string;
}

/** The server an import sends: the one chosen, else the first allowed (the platform's own inference service). */
export function teacherUrl(draft: TeacherDraft, info: KnowledgeOptionsInfo | undefined): string {
  return draft.baseUrl || info?.teachers[0] || "";
}

/**
 * The teacher server (from the servers an administrator allowed) and its model; on the platform's own
 * inference service the models are this team's deployments, offered by name. `field` is the import
 * option the errors are reported under ("options.qa", "options.knowledge").
 */
export function TeacherFields({ value, onChange, error, field }: { value: TeacherDraft; onChange: (draft: TeacherDraft) => void; error: unknown; field: string }) {
  const info = useKnowledgeOptions(true);
  const projectId = useProjectId();
  const deployments = useDeployments({ projectId: Number.isFinite(projectId) ? projectId : undefined });
  const url = teacherUrl(value, info.data);
  const ownService = url === info.data?.own_inference_url;
  return (
    <>
      <Field label="Teacher server" errors={fieldError(error, `${field}.base_url`) ?? fieldError(error, field)}>
        <select className="select" value={url} onChange={(e) => onChange({ ...value, baseUrl: e.target.value })}>
          {info.data?.teachers.map((server) => (
            <option key={server} value={server}>
              {server === info.data?.own_inference_url ? `This platform's deployments (${server})` : server}
            </option>
          ))}
        </select>
      </Field>
      <Field label="Teacher model" errors={fieldError(error, `${field}.model`)} help={ownService ? "A deployment of this team, by name" : undefined}>
        <input className="input" list="teacher-models" value={value.model} onChange={(e) => onChange({ ...value, model: e.target.value })} placeholder="model name" />
      </Field>
      <datalist id="teacher-models">{ownService ? deployments.data?.results.map((d) => <option key={d.id} value={d.name} />) : null}</datalist>
    </>
  );
}
