import { useState, type FormEvent } from "react";
import { errorBesideButton, fieldError } from "../../../api/client";
import type { TeamTracking, TeamTrackingRequest } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Card } from "../../../components/Card";
import { Field } from "../../../components/Field";
import { InlineError, QueryState } from "../../../components/States";
import { useCurrentTeam } from "../../../lib/current-team";
import { useTracking } from "../api/get-tracking";
import { useUpdateTracking } from "../api/update-tracking";

type Text = "mlflow_tracking_uri" | "mlflow_experiment" | "mlflow_username" | "wandb_project" | "wandb_entity" | "wandb_base_url";
type Secret = "mlflow_password" | "mlflow_token" | "wandb_api_key";

const TEXT_FIELDS: { name: Text; label: string; help?: string; placeholder?: string }[] = [
  { name: "mlflow_tracking_uri", label: "MLflow tracking URI", placeholder: "https://mlflow.example.com",
    help: "http(s) only. Empty: the server-wide one, if any." },
  { name: "mlflow_experiment", label: "MLflow experiment", help: "Empty: tinyforge/<team>/<project>." },
  { name: "mlflow_username", label: "MLflow user" },
  { name: "wandb_project", label: "W&B project", help: "Empty: tinyforge-<team>-<project>." },
  { name: "wandb_entity", label: "W&B entity" },
  { name: "wandb_base_url", label: "W&B server", help: "Empty: W&B's cloud." },
];

const SECRET_FIELDS: { name: Secret; label: string; saved: keyof TeamTracking }[] = [
  { name: "mlflow_password", label: "MLflow password", saved: "has_mlflow_password" },
  { name: "mlflow_token", label: "MLflow token", saved: "has_mlflow_token" },
  { name: "wandb_api_key", label: "W&B API key", saved: "has_wandb_api_key" },
];

function TrackingForm({ settings }: { settings: TeamTracking }) {
  const { team, role } = useCurrentTeam();
  const isOwner = role === "owner";
  const update = useUpdateTracking(team.id);
  const [text, setText] = useState<Record<Text, string>>(() => Object.fromEntries(TEXT_FIELDS.map((f) => [f.name, settings[f.name] ?? ""])) as Record<Text, string>);
  const [secrets, setSecrets] = useState<Partial<Record<Secret, string>>>({});
  const [logModel, setLogModel] = useState(settings.log_model ?? false);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    // Secrets left empty are not sent, so the saved ones stay.
    const filled = Object.fromEntries(Object.entries(secrets).filter(([, v]) => v)) as Partial<TeamTrackingRequest>;
    update.mutate({ ...text, ...filled, log_model: logModel }, { onSuccess: () => setSecrets({}) });
  };
  return (
    <form className="stack" onSubmit={submit} noValidate aria-label="Experiment tracking">
      <p className="muted">
        Runs of this team are mirrored to these trackers (config, curves, model card), and deployments are registered in
        MLflow's Model Registry. A tracker that is down never stops a run: it costs one warning in the run's log.
        {settings.server_mlflow ? ` Server-wide MLflow: ${settings.server_mlflow}.` : ""}
        {settings.server_wandb ? " W&B is on server-wide." : ""}
      </p>
      <div className="form-grid">
        {TEXT_FIELDS.map((f) => (
          <Field key={f.name} label={f.label} help={f.help} errors={fieldError(update.error, f.name)}>
            <input className="input" name={f.name} value={text[f.name]} placeholder={f.placeholder} disabled={!isOwner}
                   onChange={(e) => setText((t) => ({ ...t, [f.name]: e.target.value }))} />
          </Field>
        ))}
        {SECRET_FIELDS.map((f) => (
          <Field key={f.name} label={f.label} errors={fieldError(update.error, f.name)}
                 help={settings[f.saved] ? "Saved; type a new one to replace it." : "Stored encrypted, never shown again."}>
            <input className="input" type="password" autoComplete="off" name={f.name} value={secrets[f.name] ?? ""}
                   disabled={!isOwner} onChange={(e) => setSecrets((s) => ({ ...s, [f.name]: e.target.value }))} />
          </Field>
        ))}
      </div>
      <label className="row">
        <input type="checkbox" checked={logModel} disabled={!isOwner} onChange={(e) => setLogModel(e.target.checked)} />
        Also upload each run's final model folder (large)
      </label>
      {isOwner ? (
        <div className="row">
          <Button type="submit" variant="primary" busy={update.isPending}>Save tracking settings</Button>
          {update.isSuccess ? <span className="muted">Saved.</span> : null}
        </div>
      ) : (
        <p className="muted">Only the team's owners change these.</p>
      )}
      <InlineError error={errorBesideButton(update.error, [...TEXT_FIELDS.map((f) => f.name), ...SECRET_FIELDS.map((f) => f.name)])} />
    </form>
  );
}

export function TrackingPanel() {
  const { team } = useCurrentTeam();
  const tracking = useTracking(team.id);
  return (
    <Card title="Experiment tracking">
      <QueryState query={tracking}>{(settings) => <TrackingForm key={team.id} settings={settings} />}</QueryState>
    </Card>
  );
}
