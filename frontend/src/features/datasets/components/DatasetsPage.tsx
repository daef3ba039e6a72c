import { useState, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { Dialog } from "../../../components/Dialog";
import { Field } from "../../../components/Field";
import { StatusBadge } from "../../../components/Badge";
import { EmptyState, InlineError, QueryState } from "../../../components/States";
import { formatNumber, formatRelative } from "../../../lib/format";
import { useProject } from "../../../api/get-project";
import { useProjectId } from "../../../lib/use-project-id";
import { useCurrentTeam } from "../../../lib/current-team";
import { useCreateDataset } from "../api/create-dataset";
import { useDatasets } from "../../../api/list-datasets";
import { useProjectVersions } from "../../../api/list-project-versions";

function CreateDatasetForm({ projectId, onCreated }: { projectId: number; onCreated: (id: number) => void }) {
  const create = useCreateDataset();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ project: projectId, name: name.trim(), description }, { onSuccess: (d) => onCreated(d.id) });
  };
  return (
    <form className="stack" onSubmit={submit} noValidate>
      <Field label="Name" errors={fieldError(create.error, "name")} help="e.g. “Product FAQ”">
        <input className="input" name="dataset-name" value={name} onChange={(e) => setName(e.target.value)} autoFocus maxLength={100} />
      </Field>
      <Field label="Description" errors={fieldError(create.error, "description")}>
        <textarea className="textarea" value={description} onChange={(e) => setDescription(e.target.value)} />
      </Field>
      <InlineError error={errorBesideButton(create.error, ["name", "description"])} />
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!name.trim()}>
          Create dataset
        </Button>
      </div>
    </form>
  );
}

export function DatasetsPage() {
  const projectId = useProjectId();
  const project = useProject(projectId);
  const datasets = useDatasets(projectId);
  const versions = useProjectVersions(projectId);
  const versionById = new Map(resultsOf(versions.data).map((v) => [v.id, v]));
  const { canWrite } = useCurrentTeam();
  const [creating, setCreating] = useState(false);
  const navigate = useNavigate();
  const newButton = canWrite ? (
    <Button variant="primary" onClick={() => setCreating(true)}>
      New dataset
    </Button>
  ) : null;
  return (
    <>
      <PageHeader
        breadcrumbs={<><Link to="/projects">Projects</Link> / <Link to={`/projects/${projectId}`}>{project.data?.name ?? "…"}</Link></>}
        title="Datasets"
        description="Each import becomes an immutable version with a validation report."
        actions={newButton}
      />
      <Card bodyClassName="">
        <QueryState
          query={datasets}
          loadingLabel="Loading datasets…"
          isEmpty={(d) => resultsOf(d).length === 0}
          empty={<EmptyState title="No datasets yet" action={newButton}>Create a dataset, then upload files, query a database or import Google Docs.</EmptyState>}
        >
          {(data) => (
            <div className="table-wrap">
              <table className="table">
                <thead>
                  <tr>
                    <th>Name</th>
                    <th>Latest version</th>
                    <th className="num">Rows</th>
                    <th>Updated</th>
                  </tr>
                </thead>
                <tbody>
                  {resultsOf(data).map((d) => {
                    const latest = d.latest_version ? versionById.get(d.latest_version) : undefined;
                    return (
                    <tr key={d.id}>
                      <td>
                        <Link to={`${d.id}`}>{d.name}</Link>
                        {d.description ? <div className="small muted">{d.description}</div> : null}
                      </td>
                      <td>
                        {latest ? (
                          <span className="row">
                            v{latest.number} <StatusBadge status={latest.status} />
                          </span>
                        ) : (
                          <span className="muted">no versions</span>
                        )}
                      </td>
                      <td className="num">{formatNumber(latest?.row_count)}</td>
                      <td className="nowrap">{formatRelative(d.updated_at)}</td>
                    </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
        </QueryState>
      </Card>
      <Dialog open={creating} onClose={() => setCreating(false)} title="New dataset">
        <CreateDatasetForm
          projectId={projectId}
          onCreated={(id) => {
            setCreating(false);
            void navigate(`${id}`);
          }}
        />
      </Dialog>
    </>
  );
}
