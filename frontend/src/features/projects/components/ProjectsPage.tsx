import { useState, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { Dialog } from "../../../components/Dialog";
import { Field } from "../../../components/Field";
import { EmptyState, InlineError, QueryState } from "../../../components/States";
import { formatRelative } from "../../../lib/format";
import { useCurrentTeam } from "../../../lib/current-team";
import { useCreateProject } from "../api/create-project";
import { useProjects } from "../../../api/list-projects";

export function CreateProjectForm({ onCreated }: { onCreated: (id: number) => void }) {
  const { team } = useCurrentTeam();
  const create = useCreateProject();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ team: team.id, name: name.trim(), description }, { onSuccess: (project) => onCreated(project.id) });
  };
  return (
    <form className="stack" onSubmit={submit} noValidate>
      <Field label="Name" errors={fieldError(create.error, "name")} help="Unique within the team, e.g. “Support bot”.">
        <input className="input" name="name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} autoFocus />
      </Field>
      <Field label="Description" errors={fieldError(create.error, "description")}>
        <textarea className="textarea" name="description" value={description} onChange={(e) => setDescription(e.target.value)} />
      </Field>
      <InlineError error={errorBesideButton(create.error, ["name", "description"])} />
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!name.trim()}>
          Create project
        </Button>
      </div>
    </form>
  );
}

export function ProjectsPage() {
  const { team, canWrite } = useCurrentTeam();
  const projects = useProjects(team.id);
  const [creating, setCreating] = useState(false);
  const navigate = useNavigate();
  const newButton = canWrite ? (
    <Button variant="primary" onClick={() => setCreating(true)}>
      New project
    </Button>
  ) : null;
  return (
    <>
      <PageHeader title="Projects" description={`Workspaces of ${team.name}: datasets, training runs and deployments.`} actions={newButton} />
      <QueryState
        query={projects}
        loadingLabel="Loading projects…"
        isEmpty={(data) => resultsOf(data).length === 0}
        empty={
          <Card>
            <EmptyState title="No projects yet" action={newButton}>
              {canWrite ? "Create one to bring in data and train a model." : "A teammate with write access can create one."}
            </EmptyState>
          </Card>
        }
      >
        {(data) => (
          <ul className="grid-cards" style={{ listStyle: "none", padding: 0, margin: 0 }}>
            {resultsOf(data).map((project) => (
              <li key={project.id} className="card">
                <Link className="card-link" to={`/projects/${project.id}`}>
                  <h2>{project.name}</h2>
                  <p className="muted" style={{ margin: "4px 0 8px", minHeight: 21 }}>
                    {project.description || "No description"}
                  </p>
                  <span className="small muted">Created {formatRelative(project.created_at)}</span>
                </Link>
              </li>
            ))}
          </ul>
        )}
      </QueryState>
      <Dialog open={creating} onClose={() => setCreating(false)} title="New project">
        <CreateProjectForm
          onCreated={(id) => {
            setCreating(false);
            void navigate(`/projects/${id}`);
          }}
        />
      </Dialog>
    </>
  );
}
