import { useState, type FormEvent } from "react";
import { errorBesideButton, fieldError } from "../../../api/client";
import type { ApiToken, CreatedApiToken, Scope } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Card } from "../../../components/Card";
import { CopyButton } from "../../../components/CopyButton";
import { Field } from "../../../components/Field";
import { StatusBadge } from "../../../components/Badge";
import { RecordTable, type Column } from "../../../components/RecordTable";
import { EmptyState, InlineError } from "../../../components/States";
import { formatDateTime, formatRelative } from "../../../lib/format";
import { useCurrentTeam } from "../../../lib/current-team";
import { useCreateToken } from "../api/create-token";
import { useTokens } from "../api/list-tokens";
import { useRevokeToken } from "../api/revoke-token";

const SCOPES: { value: Scope; label: string; help: string }[] = [
  { value: "read", label: "Read", help: "list and read projects, datasets, runs" },
  { value: "write", label: "Write", help: "create and change things (implies read)" },
  { value: "inference", label: "Inference", help: "call deployed models through /v1/" },
];

const EXPIRY_CHOICES = [
  { value: "30", label: "30 days" },
  { value: "90", label: "90 days" },
  { value: "365", label: "1 year" },
  { value: "never", label: "Never" },
];

function tokenStatus(token: { revoked_at: string | null; expires_at?: string | null }): string {
  if (token.revoked_at) return "revoked";
  if (token.expires_at && new Date(token.expires_at).getTime() < Date.now()) return "expired";
  return "active";
}

export function CreateTokenForm({ onCreated }: { onCreated: (token: CreatedApiToken) => void }) {
  const { team, canWrite } = useCurrentTeam();
  const create = useCreateToken();
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<Scope[]>(["read"]);
  const [expiry, setExpiry] = useState("90");
  const toggle = (scope: Scope) => setScopes((s) => (s.includes(scope) ? s.filter((x) => x !== scope) : [...s, scope]));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const expires_at = expiry === "never" ? null : new Date(Date.now() + Number(expiry) * 86400_000).toISOString();
    create.mutate({ team: team.id, name: name.trim(), scopes, expires_at }, { onSuccess: (token) => { setName(""); onCreated(token); } });
  };
  const scopeErrors = fieldError(create.error, "scopes");
  return (
    <form className="stack" onSubmit={submit} noValidate aria-label="Create API token">
      <div className="form-grid">
        <Field label="Token name" errors={fieldError(create.error, "name")} help="What uses it, e.g. “CI pipeline”.">
          <input className="input" name="token-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={100} />
        </Field>
        <Field label="Expires" errors={fieldError(create.error, "expires_at")}>
          <select className="select" value={expiry} onChange={(e) => setExpiry(e.target.value)}>
            {EXPIRY_CHOICES.map((c) => (
              <option key={c.value} value={c.value}>
                {c.label}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <fieldset aria-describedby={scopeErrors ? "scope-errors" : undefined}>
        <legend>Scopes</legend>
        <div className="row" style={{ gap: 16 }}>
          {SCOPES.map((scope) => (
            <label key={scope.value} className="checkbox" title={scope.help}>
              <input
                type="checkbox"
                checked={scopes.includes(scope.value)}
                disabled={scope.value === "write" && !canWrite}
                onChange={() => toggle(scope.value)}
              />
              {scope.label}{" "}
              <span className="muted small">({scope.value === "write" && !canWrite ? `your role in ${team.name} cannot write` : scope.help})</span>
            </label>
          ))}
        </div>
        {scopeErrors ? (
          <ul id="scope-errors" className="field-error" role="alert">
            {scopeErrors.map((r) => (
              <li key={r}>{r}</li>
            ))}
          </ul>
        ) : null}
      </fieldset>
      <InlineError error={errorBesideButton(create.error, ["name", "expires_at", "scopes"])} />
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!name.trim() || scopes.length === 0}>
          Create token
        </Button>
        <span className="muted small">Limited to the team {team.name}.</span>
      </div>
    </form>
  );
}

export function NewTokenSecret({ token, onDismiss }: { token: CreatedApiToken; onDismiss: () => void }) {
  return (
    <div className="alert alert-success stack-sm" role="status">
      <strong>Token “{token.name}” created. Copy it now: it is shown only once.</strong>
      <div className="row">
        <code className="input truncate" style={{ width: "auto", flex: 1, minHeight: 0 }} data-testid="new-token-secret">
          {token.token}
        </code>
        <CopyButton text={token.token} label="Copy token" size="md" />
        <Button onClick={onDismiss}>Done</Button>
      </div>
    </div>
  );
}

export function TokensPanel() {
  const { team } = useCurrentTeam();
  const tokens = useTokens(team.id);
  const revoke = useRevokeToken();
  const [created, setCreated] = useState<CreatedApiToken | null>(null);
  const columns: Column<ApiToken>[] = [
    { header: "Name", cell: (t) => t.name },
    { header: "Prefix", cell: (t) => <code>{t.prefix}…</code> },
    { header: "Scopes", cell: (t) => t.scopes.join(", ") },
    { header: "Status", cell: (t) => <StatusBadge status={tokenStatus(t)} /> },
    { header: "Created", className: "nowrap", cell: (t) => formatDateTime(t.created_at) },
    { header: "Expires", className: "nowrap", cell: (t) => (t.expires_at ? formatDateTime(t.expires_at) : "never") },
    { header: "Last used", className: "nowrap", cell: (t) => formatRelative(t.last_used_at) },
  ];
  return (
    <div className="stack">
      {/* Tokens are personal: viewers make read tokens too (the server caps scopes by role). */}
      <Card title="New API token">
        <div className="stack">
          {created ? <NewTokenSecret token={created} onDismiss={() => setCreated(null)} /> : null}
          <CreateTokenForm onCreated={setCreated} />
        </div>
      </Card>
      <Card title="Your API tokens" bodyClassName="">
        <RecordTable
          query={tokens}
          columns={columns}
          empty={<EmptyState title="No tokens yet">Scripts and the openai client authenticate with a token: Authorization: Bearer …</EmptyState>}
          remove={{
            mutation: revoke,
            variables: (t) => t.id,
            label: "Revoke",
            confirm: (t) => `Revoke “${t.name}”? Scripts using it stop working at once.`,
            allowed: (t) => tokenStatus(t) === "active",
          }}
        />
      </Card>
    </div>
  );
}
