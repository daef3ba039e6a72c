import { useMemo, useState } from "react";
import { useNavigate } from "react-router";
import { errorBesideButton, fieldError } from "../../../api/client";
import type { ColumnMapping, QueryPreview } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";
import { useImportSql, usePreviewQuery, useTestConnection } from "../api/sql-import";
import { ConnectionPicker } from "./ConnectionPicker";

function previewRows(preview: QueryPreview): unknown[][] {
  return preview.rows.map((row) => preview.columns.map((c) => row[c]));
}

/** Guesses the mapping from common column names (question/answer, prompt/completion...). */
export function guessMapping(columns: string[]): ColumnMapping {
  const find = (...names: string[]) => columns.find((c) => names.includes(c.toLowerCase())) ?? "";
  return {
    instruction: find("instruction", "question", "prompt", "query", "title"),
    input: find("input", "context"),
    output: find("output", "answer", "completion", "response", "body"),
    metadata: [],
  };
}

export function SqlImportPanel({ projectId, datasetId }: { projectId: number; datasetId: number }) {
  const [connection, setConnection] = useState<number | null>(null);
  const [query, setQuery] = useState("SELECT question, answer FROM faq");
  const [mapping, setMapping] = useState<ColumnMapping>({ instruction: "", input: "", output: "", metadata: [] });
  const [note, setNote] = useState("");
  const test = useTestConnection();
  const preview = usePreviewQuery();
  const importSql = useImportSql();
  const navigate = useNavigate();
  const columns = useMemo(() => preview.data?.columns ?? [], [preview.data]);

  const runPreview = () => {
    if (connection === null) return;
    preview.mutate({ connectionId: connection, query }, { onSuccess: (p) => setMapping(guessMapping(p.columns)) });
  };
  const mappingError = (key: string) => fieldError(importSql.error, `mapping.${key}`) ?? fieldError(importSql.error, key);
  const select = (key: "instruction" | "input" | "output", label: string, help: string) => (
    <Field label={label} help={help} errors={mappingError(key)}>
      <select className="select" value={mapping[key]} onChange={(e) => setMapping({ ...mapping, [key]: e.target.value })}>
        <option value="">{key === "input" ? "(none)" : "Choose a column"}</option>
        {columns.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
    </Field>
  );
  return (
    <div className="stack">
      <ConnectionPicker projectId={projectId} kind="sql" value={connection} onChange={setConnection} />
      {connection !== null ? (
        <>
          <div className="row">
            <Button busy={test.isPending} onClick={() => test.mutate(connection)}>
              Test connection
            </Button>
            {test.isSuccess ? (
              <span className={`badge ${test.data.ok ? "badge-success" : "badge-danger"}`} role="status">
                {test.data.message || (test.data.ok ? "Connected" : "Connection failed")}
                {test.data.server_version ? ` · ${test.data.dialect ?? ""} ${test.data.server_version}` : ""}
              </span>
            ) : null}
          </div>
          <InlineError error={test.error} />
          <Field label="Query" help="A read-only SELECT; the session is read-only and has a statement timeout." errors={fieldError(preview.error, "query") ?? fieldError(importSql.error, "query")}>
            <textarea className="textarea mono" value={query} onChange={(e) => setQuery(e.target.value)} rows={4} />
          </Field>
          <div className="row">
            <Button busy={preview.isPending} disabled={!query.trim()} onClick={runPreview}>
              Preview first rows
            </Button>
          </div>
          <InlineError error={errorBesideButton(preview.error, ["query"])} />
          {preview.data ? (
            <>
              {preview.data.mapping_error ? <div className="alert alert-warning">{preview.data.mapping_error}</div> : null}
              <div className="table-wrap card">
                <table className="table" aria-label="Query preview">
                  <thead>
                    <tr>
                      {columns.map((c) => (
                        <th key={c}>{c}</th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {previewRows(preview.data).map((row, i) => (
                      <tr key={i}>
                        {row.map((cell, j) => (
                          <td key={j} className="small" style={{ maxWidth: 320, overflowWrap: "anywhere" }}>
                            {cell === null || cell === undefined ? <span className="muted">null</span> : String(cell)}
                          </td>
                        ))}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <fieldset>
                <legend>Column mapping</legend>
                <div className="form-grid">
                  {select("instruction", "Instruction", "The user's request")}
                  {select("input", "Input", "Optional extra context")}
                  {select("output", "Output", "The answer the model learns")}
                  <Field label="Metadata columns" help="Kept with each row, not trained on" errors={mappingError("metadata")}>
                    <select
                      className="select"
                      multiple
                      value={mapping.metadata}
                      onChange={(e) => setMapping({ ...mapping, metadata: Array.from(e.target.selectedOptions, (o) => o.value) })}
                    >
                      {columns.map((c) => (
                        <option key={c} value={c}>
                          {c}
                        </option>
                      ))}
                    </select>
                  </Field>
                </div>
              </fieldset>
              <Field label="Version note">
                <input className="input" value={note} onChange={(e) => setNote(e.target.value)} />
              </Field>
              <InlineError error={errorBesideButton(importSql.error, ["query", "mapping", "mapping.instruction", "mapping.output", "mapping.input", "mapping.metadata", "instruction", "output", "input", "metadata"])} />
              <div className="form-actions">
                <Button
                  variant="primary"
                  busy={importSql.isPending}
                  disabled={!mapping.instruction || !mapping.output}
                  onClick={() =>
                    importSql.mutate({ dataset: datasetId, connection, source_config: { query, mapping }, note }, { onSuccess: (v) => void navigate(`versions/${v.id}`) })
                  }
                >
                  Import rows as a new version
                </Button>
              </div>
            </>
          ) : null}
        </>
      ) : null}
    </div>
  );
}
