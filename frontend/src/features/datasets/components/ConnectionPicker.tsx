import { useState, type FormEvent } from "react";
import { errorBesideButton, fieldError, resultsOf } from "../../../api/client";
import type { ConnectionKind } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError, Spinner } from "../../../components/States";
import { useConnections, useCreateConnection } from "../api/connections";

/** Choose a saved connection of one kind, or save a new one (its secret never comes back). */
export function ConnectionPicker({
  projectId,
  kind,
  value,
  onChange,
}: {
  projectId: number;
  kind: ConnectionKind;
  value: number | null;
  onChange: (id: number | null) => void;
}) {
  const connections = useConnections(projectId);
  const create = useCreateConnection();
  const [adding, setAdding] = useState(false);
  const [name, setName] = useState("");
  const [secret, setSecret] = useState("");
  const [googleAuth, setGoogleAuth] = useState<"service_account_json" | "oauth_token">("service_account_json");
  const ofKind = resultsOf(connections.data).filter((c) => c.kind === kind);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const credentials = kind === "sql" ? { url: secret } : { [googleAuth]: secret };
    create.mutate(
      { project: projectId, name: name.trim(), kind, credentials },
      {
        onSuccess: (c) => {
          onChange(c.id);
          setAdding(false);
          setSecret("");
          setName("");
        },
      },
    );
  };
  if (connections.isPending) return <Spinner label="Loading connections" />;
  if (connections.isError) return <InlineError error={connections.error} />;
  if (adding || ofKind.length === 0) {
    const secretField = kind === "sql" ? "url" : googleAuth;
    return (
      <form className="stack" onSubmit={submit} noValidate aria-label="New connection">
        <div className="form-grid">
          <Field label="Connection name" errors={fieldError(create.error, "name")}>
            <input className="input" value={name} onChange={(e) => setName(e.target.value)} placeholder={kind === "sql" ? "Support DB" : "Docs service account"} />
          </Field>
          {kind === "google" ? (
            <Field label="Authenticate with">
              <select className="select" value={googleAuth} onChange={(e) => setGoogleAuth(e.target.value as typeof googleAuth)}>
                <option value="service_account_json">Service-account JSON key</option>
                <option value="oauth_token">OAuth access token</option>
              </select>
            </Field>
          ) : null}
        </div>
        <Field
          label={kind === "sql" ? "Connection URL" : googleAuth === "oauth_token" ? "OAuth token" : "Service-account JSON"}
          errors={fieldError(create.error, "credentials") ?? fieldError(create.error, secretField)}
          help={
            kind === "sql"
              ? "sqlite:///path/to/file.db, postgresql://user:password@host/db or mysql://user:password@host/db. Stored encrypted; never shown again."
              : "Share the documents with the service account's e-mail. Stored encrypted; never shown again."
          }
        >
          {kind === "google" && googleAuth === "service_account_json" ? (
            <textarea className="textarea mono" value={secret} onChange={(e) => setSecret(e.target.value)} />
          ) : (
            <input className="input mono" type="password" autoComplete="off" value={secret} onChange={(e) => setSecret(e.target.value)} />
          )}
        </Field>
        <InlineError error={errorBesideButton(create.error, ["name", "credentials", secretField])} />
        <div className="form-actions">
          <Button type="submit" variant="primary" busy={create.isPending} disabled={!name.trim() || !secret}>
            Save connection
          </Button>
          {ofKind.length ? <Button onClick={() => setAdding(false)}>Use a saved one</Button> : null}
        </div>
      </form>
    );
  }
  return (
    <div className="row" style={{ alignItems: "flex-end" }}>
      <Field label="Connection" className="grow">
        <select className="select" value={value ?? ""} onChange={(e) => onChange(e.target.value ? Number(e.target.value) : null)}>
          <option value="">Choose…</option>
          {ofKind.map((c) => (
            <option key={c.id} value={c.id}>
              {c.name}
              {typeof c.options.host === "string" ? ` (${c.options.dialect ?? ""} ${c.options.host})` : ""}
            </option>
          ))}
        </select>
      </Field>
      <Button onClick={() => setAdding(true)}>New connection</Button>
    </div>
  );
}
