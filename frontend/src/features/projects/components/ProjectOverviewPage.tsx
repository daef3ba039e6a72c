import { Link, useNavigate } from "react-router";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { ErrorState, InlineError, LoadingState } from "../../../components/States";
import { formatDateTime } from "../../../lib/format";
import { forgetLastProject } from "../../../lib/last-project";
import { useCurrentTeam } from "../../../lib/current-team";
import { useDeleteProject } from "../api/delete-project";
import { useProject } from "../../../api/get-project";
import { useProjectId } from "../../../lib/use-project-id";

const SECTIONS = [
  { to: "datasets", title: "Datasets", text: "Upload files, pull rows from a SQL database or import Google Docs; read each version's validation report." },
  { to: "runs", title: "Train", text: "Fine-tune a base model with LoRA or a full fine-tune and watch loss curves live." },
  { to: "services", title: "Services", text: "Deploy a run behind the OpenAI-compatible API and download exports." },
];

export function ProjectOverviewPage() {
  const projectId = useProjectId();
  const project = useProject(projectId);
  const { canManage } = useCurrentTeam();
  const remove = useDeleteProject();
  const navigate = useNavigate();
  if (project.isPending) return <LoadingState label="Loading project…" />;
  if (project.isError) return <ErrorState error={project.error} onRetry={() => void project.refetch()} />;
  const p = project.data;
  return (
    <>
      <PageHeader
        breadcrumbs={<Link to="/projects">Projects</Link>}
        title={p.name}
        description={p.description || `Created ${formatDateTime(p.created_at)}`}
        actions={
          canManage ? (
            <Button
              variant="danger"
              busy={remove.isPending}
              onClick={() => {
                if (window.confirm(`Delete the project “${p.name}” with all its datasets, runs and deployments?`)) {
                  remove.mutate(p.id, {
                    onSuccess: () => {
                      forgetLastProject();
                      void navigate("/projects");
                    },
                  });
                }
              }}
            >
              Delete project
            </Button>
          ) : null
        }
      />
      <InlineError error={remove.error} />
      <div className="grid-3">
        {SECTIONS.map((s) => (
          <Card key={s.to} bodyClassName="">
            <Link className="card-link" to={s.to}>
              <h2>{s.title}</h2>
              <p className="muted" style={{ marginBottom: 0 }}>
                {s.text}
              </p>
            </Link>
          </Card>
        ))}
      </div>
    </>
  );
}
