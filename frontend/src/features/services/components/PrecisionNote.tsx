import type { Deployment, Precision } from "../../../api/types";
import { InlineError } from "../../../components/States";
import { useCurrentTeam } from "../../../lib/current-team";
import { useSetDeploymentPrecision } from "../api/deployment-actions";

export const PRECISIONS: { value: Precision; label: string }[] = [
  { value: "auto", label: "auto (fastest that keeps quality)" },
  { value: "float32", label: "float32" },
  { value: "bfloat16", label: "bfloat16 (native CPUs/GPUs only)" },
  { value: "float16", label: "float16 (GPUs; CPUs with F16C, checked against float32 at load)" },
  { value: "int8", label: "int8 (CPU, checked against float32 at load)" },
];

/** Which precision serves a PyTorch deployment and why (the inference service's choice at load),
 *  with the user's override: changing it reloads the deployment. */
export function PrecisionNote({ deployment }: { deployment: Deployment }) {
  const { canWrite } = useCurrentTeam();
  const update = useSetDeploymentPrecision();
  const d = deployment;
  if (d.runtime !== "pytorch") return null;
  return (
    <div className="small" aria-label="Precision">
      <div className="row">
        <span>
          Serving in <strong>{d.serving_precision || (d.status === "ready" || d.status === "pending" ? "… (loading)" : "—")}</strong>
          {d.precision === "auto" ? " · chosen automatically" : ` · asked for ${d.precision}`}
        </span>
        {canWrite ? (
          <select
            className="select select-sm"
            aria-label="Precision"
            value={d.precision}
            disabled={update.isPending}
            onChange={(e) => update.mutate({ id: d.id, precision: e.target.value as Precision })}
          >
            {PRECISIONS.map((p) => (
              <option key={p.value} value={p.value}>
                {p.label}
              </option>
            ))}
          </select>
        ) : null}
      </div>
      {d.precision_reason ? <div className="muted">Why: {d.precision_reason}</div> : null}
      <InlineError error={update.error} />
    </div>
  );
}
