import { useRef, useState, type DragEvent } from "react";
import { useNavigate } from "react-router";
import { errorBesideButton, fieldError, type UploadProgress } from "../../../api/client";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { ProgressBar } from "../../../components/ProgressBar";
import { InlineError } from "../../../components/States";
import { formatBytes } from "../../../lib/format";
import { useKnowledgeOptions, useKnowledgePreview } from "../api/knowledge";
import { useUploadFiles } from "../api/upload-files";
import { EMPTY_KNOWLEDGE, KnowledgeOptionsForm, KnowledgePreview, knowledgeOption } from "./KnowledgeOptionsForm";
import { EMPTY_QA, QAOptionsForm, qaOption } from "./QAOptionsForm";

const ACCEPT = ".txt,.md,.markdown,.pdf,.docx,.csv,.json,.jsonl";

export const RECIPES = [
  { value: "sections", label: "Heading → section pairs", help: "Each heading becomes an instruction, its section the answer." },
  { value: "text", label: "Plain text chunks", help: "For continued pre-training on the raw text." },
  { value: "qa", label: "Generated questions and answers", help: "A model writes Q/A pairs from each chunk." },
  {
    value: "knowledge",
    label: "Facts → many questions (knowledge)",
    help: "A teacher model writes several grounded questions per fact, and a held-out fact check.",
  },
];

export function UploadPanel({ datasetId }: { datasetId: number }) {
  const upload = useUploadFiles();
  const navigate = useNavigate();
  const inputRef = useRef<HTMLInputElement>(null);
  const abortRef = useRef<AbortController | null>(null);
  const [files, setFiles] = useState<File[]>([]);
  const [dragging, setDragging] = useState(false);
  const [progress, setProgress] = useState<UploadProgress | null>(null);
  const [note, setNote] = useState("");
  const [recipe, setRecipe] = useState("sections");
  const [stopAtFirstBadRow, setStopAtFirstBadRow] = useState(false);
  const [knowledge, setKnowledge] = useState(EMPTY_KNOWLEDGE);
  const [qa, setQA] = useState(EMPTY_QA);
  // The teachers an administrator allowed, for both recipes that call one.
  const teacherInfo = useKnowledgeOptions(recipe === "knowledge" || recipe === "qa");
  const preview = useKnowledgePreview();
  const options = () => ({
    recipe,
    skip_bad_records: !stopAtFirstBadRow,
    ...(recipe === "knowledge" ? { knowledge: knowledgeOption(knowledge, teacherInfo.data) } : {}),
    ...(recipe === "qa" ? { qa: qaOption(qa, teacherInfo.data) } : {}),
  });

  const addFiles = (list: FileList | null) => {
    if (!list) return;
    setFiles((current) => [...current, ...Array.from(list).filter((f) => !current.some((c) => c.name === f.name && c.size === f.size))]);
  };
  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    addFiles(event.dataTransfer.files);
  };
  const start = () => {
    abortRef.current = new AbortController();
    setProgress({ loaded: 0, total: files.reduce((n, f) => n + f.size, 0) });
    upload.mutate(
      { datasetId, files, note, options: options(), onProgress: setProgress, signal: abortRef.current.signal },
      {
        onSuccess: (version) => {
          setFiles([]);
          void navigate(`versions/${version.id}`);
        },
        onSettled: () => setProgress(null),
      },
    );
  };
  const total = files.reduce((n, f) => n + f.size, 0);
  return (
    <div className="stack">
      <div
        className={`dropzone${dragging ? " dragging" : ""}`}
        role="button"
        tabIndex={0}
        aria-label="Drop files here or press Enter to choose files"
        onClick={() => inputRef.current?.click()}
        onKeyDown={(e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            inputRef.current?.click();
          }
        }}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <strong>Drop files here</strong> or click to choose
        <div className="small">TXT, Markdown, PDF, DOCX, CSV, JSON, JSONL</div>
        <input
          ref={inputRef}
          type="file"
          multiple
          accept={ACCEPT}
          hidden
          data-testid="file-input"
          onChange={(e) => {
            addFiles(e.target.files);
            e.target.value = "";
          }}
        />
      </div>
      {files.length ? (
        <ul className="stack-sm" style={{ listStyle: "none", padding: 0, margin: 0 }} aria-label="Files to upload">
          {files.map((f) => (
            <li key={`${f.name}-${f.size}`} className="row-between card" style={{ padding: "6px 12px" }}>
              <span className="truncate">{f.name}</span>
              <span className="row">
                <span className="muted small">{formatBytes(f.size)}</span>
                <Button size="sm" variant="ghost" aria-label={`Remove ${f.name}`} disabled={upload.isPending} onClick={() => setFiles(files.filter((x) => x !== f))}>
                  ✕
                </Button>
              </span>
            </li>
          ))}
        </ul>
      ) : null}
      <div className="form-grid">
        <Field label="Documents become" errors={fieldError(upload.error, "options")} help={RECIPES.find((r) => r.value === recipe)?.help}>
          <select className="select" value={recipe} onChange={(e) => setRecipe(e.target.value)}>
            {RECIPES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Version note" errors={fieldError(upload.error, "note")}>
          <input className="input" value={note} onChange={(e) => setNote(e.target.value)} placeholder="What changed" />
        </Field>
      </div>
      {recipe === "qa" ? <QAOptionsForm value={qa} onChange={setQA} error={upload.error} /> : null}
      {recipe === "knowledge" ? <KnowledgeOptionsForm value={knowledge} onChange={setKnowledge} error={upload.error ?? preview.error} /> : null}
      {recipe === "knowledge" && preview.data ? <KnowledgePreview preview={preview.data} /> : null}
      {recipe === "knowledge" ? <InlineError error={errorBesideButton(preview.error, ["options", "files"])} /> : null}
      <label className="checkbox">
        <input type="checkbox" checked={stopAtFirstBadRow} onChange={(e) => setStopAtFirstBadRow(e.target.checked)} />
        Stop at the first bad row (otherwise bad rows are skipped and listed in the version&apos;s report)
      </label>
      {progress ? (
        <div className="stack-sm" aria-live="polite">
          <ProgressBar value={progress.total ? progress.loaded / progress.total : 0} label="Upload progress" />
          <span className="small muted">
            Uploaded {formatBytes(progress.loaded)} of {formatBytes(progress.total)}
          </span>
        </div>
      ) : null}
      {fieldError(upload.error, "files") ? <InlineError error={new Error(fieldError(upload.error, "files")!.join(" "))} /> : null}
      <InlineError error={errorBesideButton(upload.error, ["options", "note", "files"])} />
      <div className="form-actions">
        <Button variant="primary" disabled={!files.length} busy={upload.isPending} onClick={start}>
          Upload {files.length ? `${files.length} file${files.length > 1 ? "s" : ""} (${formatBytes(total)})` : ""}
        </Button>
        {recipe === "knowledge" ? (
          <Button disabled={!files.length} busy={preview.isPending} onClick={() => preview.mutate({ datasetId, files, options: options(), chunks: 3 })}>
            Dry run on the first 3 chunks
          </Button>
        ) : null}
        {upload.isPending ? <Button onClick={() => abortRef.current?.abort()}>Cancel upload</Button> : null}
      </div>
    </div>
  );
}
