import { Link } from "react-router";
import { useGateStatus } from "../api/get-gate-status";

/** "Passes the gate" / "Fails the gate: why" for a run, linking to the gate's evaluation. */
export function GateStatusNote({ projectId, runId }: { projectId: number; runId: number }) {
  const status = useGateStatus(runId);
  const s = status.data;
  if (!s || s.state === "none") return null;
  const tone = s.state === "passes" ? "alert-success" : s.state === "pending" ? "alert-info" : "alert-warning";
  const text = s.state === "passes" ? "Passes the gate" : s.state === "pending" ? "Being checked against the gate" : "Fails the gate";
  return (
    <div className={`alert ${tone}`} role="status" data-testid="gate-status">
      <strong>{text}</strong>: {s.reason}
      {s.evaluation ? (
        <>
          {" "}
          <Link to={`/projects/${projectId}/evals/${s.evaluation}`}>See the evaluation</Link>
        </>
      ) : null}
    </div>
  );
}
