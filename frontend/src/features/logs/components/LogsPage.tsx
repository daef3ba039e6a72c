import { useEffect, useRef, useState } from "react";
import { resultsOf } from "../../../api/client";
import type { ProjectEvent } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Card, PageHeader } from "../../../components/Card";
import { EmptyState, ErrorState, LoadingState } from "../../../components/States";
import { formatDateTime } from "../../../lib/format";
import { useProjects } from "../../../api/list-projects";
import { useCurrentTeam } from "../../../lib/current-team";
import { useRuns } from "../../../api/list-runs";
import { useEventTail, type EventFilters } from "../api/tail-events";

const SOURCES = ["trainer", "worker", "ingest", "validator", "deploy", "inference", "export", "reconciler", "platform"];

function highlight(text: string, term: string) {
  if (!term) return text;
  const parts = text.split(new RegExp(`(${term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")})`, "ig"));
  return parts.map((part, i) => (i % 2 === 1 ? <mark key={i}>{part}</mark> : part));
}

export function eventsAsText(events: ProjectEvent[]): string {
  return events.map((e) => `${e.created_at}\t${e.level}\t${e.source}\t${e.message}`).join("\n") + "\n";
}

function download(events: ProjectEvent[]) {
  const url = URL.createObjectURL(new Blob([eventsAsText(events)], { type: "text/plain" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `tinyforge-logs-${new Date().toISOString().slice(0, 19)}.log`;
  link.click();
  URL.revokeObjectURL(url);
}

export function LogsPage() {
  const { team } = useCurrentTeam();
  const projects = useProjects(team.id);
  const [project, setProject] = useState<number | undefined>(undefined);
  const runs = useRuns(project ?? 0, project !== undefined);
  const [run, setRun] = useState<number | undefined>(undefined);
  const [level, setLevel] = useState<EventFilters["min_level"] | "">("");
  const [source, setSource] = useState("");
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const [follow, setFollow] = useState(true);
  const viewRef = useRef<HTMLDivElement>(null);
  const teamProjects = resultsOf(projects.data);
  // The team always scopes the tail, so another team's lines never mix in.
  const filters: EventFilters = { team: team.id, project, run, min_level: level || undefined, source: source || undefined, q: query || undefined };
  const events = useEventTail(filters, follow);
  const items = events.data?.items ?? [];

  useEffect(() => {
    if (follow && viewRef.current) viewRef.current.scrollTop = viewRef.current.scrollHeight;
  }, [items.length, follow]);

  return (
    <>
      <PageHeader
        title="Logs"
        description="Run, ingest and deployment events as they happen."
        actions={
          <>
            <label className="checkbox">
              <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} />
              Follow
            </label>
            <Button onClick={() => download(items)} disabled={!items.length}>
              Download
            </Button>
          </>
        }
      />
      <Card>
        <div className="stack">
          <form
            className="form-grid"
            role="search"
            aria-label="Filter logs"
            onSubmit={(e) => {
              e.preventDefault();
              setQuery(search.trim());
            }}
          >
            <label className="field">
              <span className="field-label">Project</span>
              <select className="select" value={project ?? ""} onChange={(e) => { setProject(e.target.value ? Number(e.target.value) : undefined); setRun(undefined); }}>
                <option value="">All of {team.name}</option>
                {teamProjects.map((p) => (
                  <option key={p.id} value={p.id}>
                    {p.name}
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span className="field-label">Run</span>
              <select className="select" value={run ?? ""} disabled={project === undefined} onChange={(e) => setRun(e.target.value ? Number(e.target.value) : undefined)}>
                <option value="">All</option>
                {resultsOf(runs.data).map((r) => (
                  <option key={r.id} value={r.id}>
                    {r.name}
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span className="field-label">Level at least</span>
              <select className="select" value={level} onChange={(e) => setLevel(e.target.value as EventFilters["min_level"] | "")}>
                <option value="">debug</option>
                <option value="info">info</option>
                <option value="warning">warning</option>
                <option value="error">error</option>
              </select>
            </label>
            <label className="field">
              <span className="field-label">Source</span>
              <select className="select" value={source} onChange={(e) => setSource(e.target.value)}>
                <option value="">All</option>
                {SOURCES.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span className="field-label">Search</span>
              <span className="row" style={{ flexWrap: "nowrap" }}>
                <input className="input" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="text in the message" />
                <Button type="submit">Search</Button>
              </span>
            </label>
          </form>
          {events.isPending ? (
            <LoadingState label="Loading events…" />
          ) : events.isError ? (
            <ErrorState error={events.error} onRetry={() => void events.refetch()} />
          ) : teamProjects.length === 0 && projects.isSuccess ? (
            <EmptyState title="No projects yet">Logs belong to projects; create one first.</EmptyState>
          ) : items.length === 0 ? (
            <EmptyState title="No events match">{follow ? "New events appear here as they happen." : "Turn on Follow to wait for new events."}</EmptyState>
          ) : (
            <div className="log-view" ref={viewRef} role="log" aria-label="Events" tabIndex={0}>
              {items.map((e) => (
                <div key={e.id} className={`log-line log-level-${e.level}`}>
                  <span className="muted" title={e.created_at}>
                    {formatDateTime(e.created_at)}
                  </span>
                  <span>{e.level}</span>
                  <span className="muted">{e.source}</span>
                  <span className="msg">{highlight(e.message, query)}</span>
                </div>
              ))}
            </div>
          )}
          <span className="small muted">
            {items.length} events{follow ? " · following" : ""}
          </span>
        </div>
      </Card>
    </>
  );
}
