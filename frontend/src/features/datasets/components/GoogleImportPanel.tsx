import { useState } from "react";
import { useNavigate } from "react-router";
import { errorBesideButton, fieldError } from "../../../api/client";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";
import { useImportGoogleDocs } from "../api/google-import";
import { ConnectionPicker } from "./ConnectionPicker";
import { RECIPES } from "./UploadPanel";

/** Accepts ids or full document URLs, one per line. */
export function parseDocumentIds(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((item) => item.match(/\/d\/([A-Za-z0-9_-]+)/)?.[1] ?? item)
    .map((item) => item.trim())
    .filter(Boolean);
}

export function GoogleImportPanel({ projectId, datasetId }: { projectId: number; datasetId: number }) {
  const [connection, setConnection] = useState<number | null>(null);
  const [docs, setDocs] = useState("");
  const [folder, setFolder] = useState("");
  const [recipe, setRecipe] = useState("sections");
  const [note, setNote] = useState("");
  const importDocs = useImportGoogleDocs();
  const navigate = useNavigate();
  const ids = parseDocumentIds(docs);
  return (
    <div className="stack">
      <ConnectionPicker projectId={projectId} kind="google" value={connection} onChange={setConnection} />
      {connection !== null ? (
        <>
          <div className="form-grid">
            <Field label="Document ids or URLs" help="One per line." errors={fieldError(importDocs.error, "document_ids")}>
              <textarea className="textarea mono" value={docs} onChange={(e) => setDocs(e.target.value)} />
            </Field>
            <Field label="…or a Drive folder id" help="Imports every Google Doc in the folder." errors={fieldError(importDocs.error, "folder_id")}>
              <input className="input mono" value={folder} onChange={(e) => setFolder(e.target.value)} />
            </Field>
            <Field label="Documents become" errors={fieldError(importDocs.error, "recipe")}>
              <select className="select" value={recipe} onChange={(e) => setRecipe(e.target.value)}>
                {RECIPES.map((r) => (
                  <option key={r.value} value={r.value}>
                    {r.label}
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Version note">
              <input className="input" value={note} onChange={(e) => setNote(e.target.value)} />
            </Field>
          </div>
          <InlineError error={errorBesideButton(importDocs.error, ["document_ids", "folder_id", "recipe"])} />
          <div className="form-actions">
            <Button
              variant="primary"
              busy={importDocs.isPending}
              disabled={!ids.length && !folder.trim()}
              onClick={() =>
                importDocs.mutate(
                  { dataset: datasetId, connection, source_config: { document_ids: ids, folder_id: folder.trim(), recipe }, note },
                  { onSuccess: (v) => void navigate(`versions/${v.id}`) },
                )
              }
            >
              Import {ids.length ? `${ids.length} document${ids.length > 1 ? "s" : ""}` : "folder"}
            </Button>
          </div>
        </>
      ) : null}
    </div>
  );
}
