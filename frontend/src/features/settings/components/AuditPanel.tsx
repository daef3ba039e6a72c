import { useState } from "react";
import { Button } from "../../../components/Button";
import { Card } from "../../../components/Card";
import { EmptyState, QueryState } from "../../../components/States";
import { formatDateTime } from "../../../lib/format";
import { useCurrentTeam } from "../../../lib/current-team";
import { useAuditEvents } from "../api/list-audit-events";

export function AuditPanel() {
  const { team } = useCurrentTeam();
  const [action, setAction] = useState("");
  const [page, setPage] = useState(1);
  const events = useAuditEvents({ teamId: team.id, action: action || undefined, page });
  return (
    <Card
      title="Audit log"
      actions={
        <label className="row small">
          <span>Action</span>
          <input
            className="input"
            style={{ width: 180 }}
            placeholder="e.g. run.cancel"
            value={action}
            onChange={(e) => {
              setAction(e.target.value);
              setPage(1);
            }}
          />
        </label>
      }
      bodyClassName=""
    >
      <QueryState query={events} isEmpty={(d) => d.results.length === 0} empty={<EmptyState title="No audit events match" />}>
        {(data) => (
          <>
            <div className="table-wrap">
              <table className="table">
                <thead>
                  <tr>
                    <th>When</th>
                    <th>Who</th>
                    <th>Action</th>
                    <th>What</th>
                    <th>Details</th>
                  </tr>
                </thead>
                <tbody>
                  {data.results.map((e) => (
                    <tr key={e.id}>
                      <td className="nowrap">{formatDateTime(e.created_at)}</td>
                      <td>{e.actor || e.actor_token || "system"}</td>
                      <td>
                        <code>{e.action}</code>
                      </td>
                      <td>
                        {e.target_type} {e.target_repr || e.target_id}
                      </td>
                      <td className="small muted mono" style={{ maxWidth: 380, overflowWrap: "anywhere" }}>
                        {Object.keys(e.changes ?? {}).length ? JSON.stringify(e.changes) : ""}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <div className="card-body row-between">
              <span className="muted small">{data.count} events</span>
              <div className="row">
                <Button size="sm" disabled={!data.previous} onClick={() => setPage((p) => p - 1)}>
                  Previous
                </Button>
                <span className="small">Page {page}</span>
                <Button size="sm" disabled={!data.next} onClick={() => setPage((p) => p + 1)}>
                  Next
                </Button>
              </div>
            </div>
          </>
        )}
      </QueryState>
    </Card>
  );
}
