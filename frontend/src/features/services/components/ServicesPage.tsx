import { useState } from "react";
import { Link, useSearchParams } from "react-router";
import { resultsOf } from "../../../api/client";
import type { Deployment } from "../../../api/types";
import { StatusBadge } from "../../../components/Badge";
import { Button } from "../../../components/Button";
import { Card, PageHeader, Stat } from "../../../components/Card";
import { CodeBlock } from "../../../components/CopyButton";
import { EmptyState, InlineError, QueryState } from "../../../components/States";
import { Tabs } from "../../../components/Tabs";
import { formatBytes, formatNumber, formatRelative } from "../../../lib/format";
import { useProject } from "../../../api/get-project";
import { useProjectId } from "../../../lib/use-project-id";
import { useCurrentTeam } from "../../../lib/current-team";
import { useRuns } from "../../../api/list-runs";
import { useDeleteDeployment, useStartDeployment, useStopDeployment } from "../api/deployment-actions";
import { useDeployments } from "../../../api/list-deployments";
import { curlSnippet, inferenceBaseUrl, openaiSnippet } from "../../../lib/inference-snippets";
import { useRequestRate } from "../request-rate";
import { DeployForm, RUNTIMES } from "./DeployForm";
import { ExportsCard } from "./ExportsCard";
import { PrecisionNote } from "./PrecisionNote";

/** Which runtime serves a deployment, with the GGUF a llama.cpp deployment serves. */
export function runtimeLabel(d: Pick<Deployment, "runtime" | "gguf_type">): string {
  if (d.runtime === "llama.cpp") return `served by llama.cpp · GGUF ${d.gguf_type}`;
  return `served by ${RUNTIMES.find((r) => r.value === d.runtime)?.label ?? d.runtime}`;
}

function DeploymentCard({ deployment, runName }: { deployment: Deployment; runName: string }) {
  const { canWrite } = useCurrentTeam();
  const stop = useStopDeployment();
  const start = useStartDeployment();
  const remove = useDeleteDeployment();
  const [snippet, setSnippet] = useState("curl");
  const baseUrl = inferenceBaseUrl();
  const d = deployment;
  const rate = useRequestRate(d);
  return (
    <Card
      title={
        <div className="row">
          <h2 className="mono">{d.name}</h2>
          <StatusBadge status={d.status} />
        </div>
      }
      actions={
        canWrite ? (
          <>
            <Link className="btn btn-sm" to={`/playground?deployment=${d.id}`}>
              Open in Playground
            </Link>
            {d.status === "ready" || d.status === "pending" ? (
              <Button size="sm" variant="danger" busy={stop.isPending} onClick={() => stop.mutate(d.id)}>
                Undeploy
              </Button>
            ) : (
              <>
                <Button size="sm" busy={start.isPending} onClick={() => start.mutate(d.id)}>
                  Deploy again
                </Button>
                <Button
                  size="sm"
                  variant="danger"
                  busy={remove.isPending}
                  onClick={() => window.confirm(`Delete the deployment ${d.name}?`) && remove.mutate(d.id)}
                >
                  Delete
                </Button>
              </>
            )}
          </>
        ) : null
      }
    >
      <div className="stack">
        <InlineError error={stop.error ?? start.error ?? remove.error} />
        {d.status === "failed" && d.error ? <div className="alert alert-error">{d.error}</div> : null}
        <div className="grid-cards" style={{ gridTemplateColumns: "repeat(auto-fill, minmax(120px, 1fr))" }}>
          <Stat label="Requests / min" value={rate === null ? "—" : formatNumber(rate, 1)} />
          <Stat label="Requests" value={formatNumber(d.request_count)} />
          <Stat label="Errors" value={formatNumber(d.error_count)} />
          <Stat label="Latency p50" value={d.latency_p50_ms === null ? "—" : `${formatNumber(d.latency_p50_ms)} ms`} />
          <Stat label="Latency p95" value={d.latency_p95_ms === null ? "—" : `${formatNumber(d.latency_p95_ms)} ms`} />
          <Stat label="Tokens in / out" value={`${formatNumber(d.tokens_in)} / ${formatNumber(d.tokens_out)}`} />
          {/* Own memory adds up across deployments; the shared runtime (base weights, KV cache) is
              the same one for every adapter of a base, so it is shown apart, never summed in. */}
          <Stat label="Own memory" value={formatBytes(d.own_memory_bytes)} />
          <Stat label="Shared (base, KV cache)" value={formatBytes(d.shared_memory_bytes)} />
        </div>
        <div className="small muted">
          Run <Link to={`/projects/${d.project}/runs/${d.run}`}>{runName}</Link> · {runtimeLabel(d)}
          {d.ready_at ? ` · serving since ${formatRelative(d.ready_at)}` : ""}
          <br />
          Endpoint <code>{baseUrl}/chat/completions</code> · model <code>{d.name}</code>
          {d.stats_updated_at ? ` · statistics ${formatRelative(d.stats_updated_at)}` : " · no requests yet"}
        </div>
        <PrecisionNote deployment={d} />
        <div>
          <Tabs label={`Code for ${d.name}`} tabs={[{ id: "curl", label: "curl" }, { id: "openai", label: "Python (openai)" }]} selected={snippet} onSelect={setSnippet} />
          <CodeBlock label={`${snippet} example`} code={snippet === "curl" ? curlSnippet(baseUrl, d.name) : openaiSnippet(baseUrl, d.name)} />
          <p className="small muted">
            Create a token with the inference scope in <Link to="/settings">Settings</Link> and export it as TINYFORGE_TOKEN.
          </p>
        </div>
      </div>
    </Card>
  );
}

export function ServicesPage() {
  const projectId = useProjectId();
  const project = useProject(projectId);
  const deployments = useDeployments({ projectId });
  const runs = useRuns(projectId);
  const { canWrite } = useCurrentTeam();
  const [params, setParams] = useSearchParams();
  const deployRun = params.get("deploy");
  const runName = (id: number) => resultsOf(runs.data).find((r) => r.id === id)?.name ?? `run ${id}`;
  return (
    <>
      <PageHeader
        breadcrumbs={<><Link to="/projects">Projects</Link> / <Link to={`/projects/${projectId}`}>{project.data?.name ?? "…"}</Link></>}
        title="Services"
        description="Deployments behind the OpenAI-compatible API, and exports to take away."
        actions={canWrite && deployRun === null ? <Button variant="primary" onClick={() => setParams({ deploy: "" })}>Deploy a run</Button> : null}
      />
      <div className="stack">
        {canWrite && deployRun !== null ? (
          <Card title="Deploy a run" actions={<Button size="sm" variant="ghost" onClick={() => setParams({})}>Close</Button>}>
            <DeployForm projectId={projectId} initialRun={deployRun ? Number(deployRun) : null} onDone={() => setParams({})} />
          </Card>
        ) : null}
        <QueryState
          query={deployments}
          loadingLabel="Loading deployments…"
          isEmpty={(d) => resultsOf(d).length === 0}
          empty={
            <Card>
              <EmptyState title="Nothing deployed yet">Deploy a succeeded run to chat with it and call it from scripts.</EmptyState>
            </Card>
          }
        >
          {(data) => (
            <div className="stack">
              {resultsOf(data).map((d) => (
                <DeploymentCard key={d.id} deployment={d} runName={runName(d.run)} />
              ))}
            </div>
          )}
        </QueryState>
        <ExportsCard projectId={projectId} />
      </div>
    </>
  );
}
