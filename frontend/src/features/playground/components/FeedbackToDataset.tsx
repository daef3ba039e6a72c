import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { fieldError, resultsOf } from "../../../api/client";
import { useCreateFeedbackVersion } from "../../../api/create-feedback-version";
import { useFeedbackSummary } from "../../../api/get-feedback-summary";
import { useDatasets } from "../../../api/list-datasets";
import type { DatasetVersion, FeedbackRowKind } from "../../../api/types";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError } from "../../../components/States";

const KINDS: { kind: FeedbackRowKind; label: string }[] = [
  { kind: "pairs", label: "Preference pairs (DPO, ORPO): picks and corrections" },
  { kind: "unpaired", label: "Unpaired preferences (KTO): thumbs up and down" },
  { kind: "supervised", label: "Supervised rows: corrections" },
];

/** "Make a dataset version from feedback": the deployment's feedback as rows of one kind, in a dataset of its project. */
export function FeedbackToDataset({ projectId, deploymentId }: { projectId: number; deploymentId: number }) {
  const summary = useFeedbackSummary(deploymentId);
  const datasets = resultsOf(useDatasets(projectId).data);
  const create = useCreateFeedbackVersion();
  const [kind, setKind] = useState<FeedbackRowKind>("pairs");
  const [datasetId, setDatasetId] = useState("");
  const [made, setMade] = useState<DatasetVersion | null>(null);
  const chosen = datasetId || (datasets[0] ? String(datasets[0].id) : "");
  const rows = summary.data?.rows[kind] ?? 0;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ dataset: Number(chosen), kind, deployment: deploymentId }, { onSuccess: setMade });
  };

  return (
    <form className="stack-sm" onSubmit={submit} aria-label="Make a dataset version from feedback">
      <div className="small muted" role="status">
        {summary.data ? `${summary.data.feedback} pieces of feedback on this deployment's answers` : "Counting feedback…"}
      </div>
      <Field label="Rows" errors={fieldError(create.error, "kind")}>
        <select className="select" value={kind} onChange={(e) => setKind(e.target.value as FeedbackRowKind)}>
          {KINDS.map((k) => (
            <option key={k.kind} value={k.kind}>
              {k.label} ({summary.data?.rows[k.kind] ?? 0})
            </option>
          ))}
        </select>
      </Field>
      <Field label="Dataset" errors={fieldError(create.error, "dataset")}>
        <select className="select" value={chosen} onChange={(e) => setDatasetId(e.target.value)}>
          {datasets.map((d) => (
            <option key={d.id} value={d.id}>
              {d.name}
            </option>
          ))}
        </select>
      </Field>
      {create.isError && !fieldError(create.error, "kind") && !fieldError(create.error, "dataset") ? <InlineError error={create.error} /> : null}
      <div className="row">
        <Button type="submit" busy={create.isPending} disabled={!chosen || rows === 0}>
          Make dataset version
        </Button>
      </div>
      {made ? (
        <p role="status" className="small">
          Version {made.number} is importing. <Link to={`/projects/${projectId}/datasets/${made.dataset}`}>Open the dataset</Link>
        </p>
      ) : null}
    </form>
  );
}
