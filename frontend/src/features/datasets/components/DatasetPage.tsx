import { useState } from "react";
import { Link, useParams } from "react-router";
import { resultsOf } from "../../../api/client";
import { StatusBadge } from "../../../components/Badge";
import { Card, PageHeader } from "../../../components/Card";
import { ProgressBar } from "../../../components/ProgressBar";
import { EmptyState, ErrorState, LoadingState, QueryState } from "../../../components/States";
import { Tabs } from "../../../components/Tabs";
import { formatBytes, formatNumber, formatRelative } from "../../../lib/format";
import { useProject } from "../../../api/get-project";
import { useProjectId } from "../../../lib/use-project-id";
import { useCurrentTeam } from "../../../lib/current-team";
import { useDataset } from "../api/get-dataset";
import { useVersions } from "../api/list-versions";
import { isVersionBusy } from "../../../api/status";
import { invalidCountOf } from "../version-status";
import { GoogleImportPanel } from "./GoogleImportPanel";
import { SqlImportPanel } from "./SqlImportPanel";
import { UploadPanel } from "./UploadPanel";

const SOURCES = [
  { id: "upload", label: "Upload files" },
  { id: "sql", label: "SQL database" },
  { id: "google", label: "Google Docs" },
];

function VersionsTable({ datasetId }: { datasetId: number }) {
  const versions = useVersions(datasetId);
  return (
    <QueryState query={versions} isEmpty={(d) => resultsOf(d).length === 0} empty={<EmptyState title="No versions yet">Add data below to create version 1.</EmptyState>}>
      {(data) => (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Version</th>
                <th>Status</th>
                <th>Source</th>
                <th className="num">Rows</th>
                <th className="num">Invalid</th>
                <th className="num">Size</th>
                <th>Created</th>
              </tr>
            </thead>
            <tbody>
              {resultsOf(data).map((v) => (
                <tr key={v.id}>
                  <td>
                    <Link to={`versions/${v.id}`}>v{v.number}</Link>
                    {v.note ? <div className="small muted">{v.note}</div> : null}
                  </td>
                  <td>
                    <div className="stack-sm">
                      <StatusBadge status={v.status} />
                      {isVersionBusy(v.status) ? <ProgressBar value={v.progress} label={`Import progress of v${v.number}`} /> : null}
                    </div>
                  </td>
                  <td>{v.source_kind.replace(/_/g, " ")}</td>
                  <td className="num">{formatNumber(v.row_count)}</td>
                  <td className="num">{v.status === "ready" ? formatNumber(invalidCountOf(v.validation_report)) : "—"}</td>
                  <td className="num">{formatBytes(v.size_bytes)}</td>
                  <td className="nowrap">{formatRelative(v.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </QueryState>
  );
}

export function DatasetPage() {
  const projectId = useProjectId();
  const datasetId = Number(useParams().datasetId);
  const project = useProject(projectId);
  const dataset = useDataset(datasetId);
  const { canWrite } = useCurrentTeam();
  const [source, setSource] = useState("upload");
  if (dataset.isPending) return <LoadingState label="Loading dataset…" />;
  if (dataset.isError) return <ErrorState error={dataset.error} onRetry={() => void dataset.refetch()} />;
  return (
    <>
      <PageHeader
        breadcrumbs={
          <>
            <Link to="/projects">Projects</Link> / <Link to={`/projects/${projectId}`}>{project.data?.name ?? "…"}</Link> /{" "}
            <Link to={`/projects/${projectId}/datasets`}>Datasets</Link>
          </>
        }
        title={dataset.data.name}
        description={dataset.data.description || undefined}
      />
      <div className="stack">
        <Card title="Versions" bodyClassName="">
          <VersionsTable datasetId={datasetId} />
        </Card>
        {canWrite ? (
          <Card title="Add data">
            <Tabs label="Data source" tabs={SOURCES} selected={source} onSelect={setSource} />
            <div role="tabpanel" aria-label={SOURCES.find((s) => s.id === source)?.label}>
              {source === "upload" ? (
                <UploadPanel datasetId={datasetId} />
              ) : source === "sql" ? (
                <SqlImportPanel projectId={projectId} datasetId={datasetId} />
              ) : (
                <GoogleImportPanel projectId={projectId} datasetId={datasetId} />
              )}
            </div>
          </Card>
        ) : null}
      </div>
    </>
  );
}
