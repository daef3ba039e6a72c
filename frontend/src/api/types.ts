// The API's shapes, named once for the features to import: what it answers and what it is sent.
// Everything comes from the schema generated from the backend (schema.d.ts, `npm run gen:api`);
// only the JSON payloads the schema leaves as free-form objects (reports, statistics, configs,
// credentials, import sources) are refined here.
import type { components, operations } from "./schema";

type S = components["schemas"];

// Enums are named by the field that holds them: the schema generator renames an enum component
// when another field of the same name appears (KindEnum became DataConnectionKindEnum).
export type Role = NonNullable<S["Membership"]["role"]>;
export type Scope = S["ApiToken"]["scopes"][number];
export type TeamRef = S["TeamOfUser"];
export type Me = S["Me"];
export type Project = S["Project"];
export type ApiToken = S["ApiToken"];
export type CreatedApiToken = S["ApiTokenCreated"];
export type UserRef = S["UserSummary"];
export type Membership = S["Membership"];
export type TeamTracking = S["TeamTracking"];
export type TeamTrackingRequest = S["TeamTrackingRequest"];
export type TrackedRun = S["TrackedRun"];
export type AuditEvent = Omit<S["AuditEvent"], "changes"> & { changes: Record<string, unknown> };
export type Dataset = S["Dataset"];
export type DatasetVersionStatus = S["DatasetVersion"]["status"];
export type ValidationReport = S["ValidationReport"];
export type InvalidRow = S["RowProblem"];
export type TokenHistogram = S["TokenHistogram"];
export type PreviewSegment = S["PreviewSegment"];
export type PreviewRow = S["PreviewRow"];
export type VersionPreview = S["VersionPreview"];
export type KnowledgeOptionsInfo = S["KnowledgeOptionsInfo"];
export type KnowledgePreviewResult = S["KnowledgePreviewResult"];
/** The knowledge recipe's dry run, multipart like an upload. */
export type KnowledgePreviewRequest = Omit<S["KnowledgePreviewRequest"], "files" | "options"> & {
  files: File[];
  options: Record<string, unknown>;
};
export type QueryPreview = S["ConnectionPreview"];
export type ConnectionTestResult = S["ConnectionTestResult"];
export type DatasetVersion = Omit<S["DatasetVersion"], "stats" | "validation_report" | "source_config"> & {
  stats: Record<string, unknown>;
  /** Empty until validation has run. */
  validation_report: Partial<ValidationReport>;
  source_config?: Record<string, unknown>;
};
export type DataConnection = Omit<S["DataConnection"], "options"> & { options: Record<string, unknown> };
export type RunStatus = S["TrainingRun"]["status"];
export type TrainingMethod = NonNullable<S["TrainingRun"]["method"]>;
export type TrainingRun = Omit<S["TrainingRun"], "config" | "summary_metrics" | "eval_results"> & {
  config: Record<string, unknown>;
  summary_metrics: Record<string, number>;
  // Loss and perplexity; answers are scored by the run's automatic evaluation (an Evaluation of purpose "run").
  eval_results: { eval_loss?: number; perplexity?: number; [key: string]: unknown };
};
export type RunEstimate = S["RunEstimate"];
export type Hyperparameter = S["Hyperparameter"];
export type TrainingPreset = Omit<S["TrainingPreset"], "resolved" | "overrides"> & {
  overrides: Record<string, unknown>;
  /** The full config per method ("lora", "full"). */
  resolved: Record<string, Record<string, unknown>>;
};
export type TrainingOptions = Omit<S["TrainingOptions"], "presets"> & { presets: TrainingPreset[] };
/** One metric's curve rows: {"step": 10, "<run id>": value, ...}. */
export type ComparisonRow = Record<string, number>;
export interface ComparedRun {
  id: number;
  name: string;
  status: RunStatus;
  attempt: number;
  base_model: string;
  method: TrainingMethod;
  dataset_version: number;
  summary_metrics: Record<string, number>;
  config: Record<string, unknown>;
}
export type RunComparison = Omit<S["RunComparison"], "runs" | "metrics"> & {
  runs: ComparedRun[];
  metrics: Record<string, ComparisonRow[]>;
};
export type RunMetric = S["RunMetric"];
export type ProjectEvent = Omit<S["Event"], "data"> & { data?: Record<string, unknown> };
export type Checkpoint = S["Checkpoint"];
export type Deployment = S["Deployment"];
export type DeploymentStatus = S["Deployment"]["status"];
export type Runtime = NonNullable<S["Deployment"]["runtime"]>;
export type Precision = NonNullable<S["Deployment"]["precision"]>;
export type GgufType = NonNullable<S["Deployment"]["gguf_type"]>;
export type Export = Omit<S["Export"], "verification"> & { verification: Record<string, unknown> };
export type ExportFormat = S["Export"]["format"];

// ---------- requests ----------

export type LoginRequest = S["LoginRequest"];
export type ProjectRequest = S["ProjectRequest"];
export type DatasetRequest = S["DatasetRequest"];
export type ConnectionKind = S["DataConnection"]["kind"];
export type DataConnectionRequest = Omit<S["DataConnectionRequest"], "options" | "credentials"> & {
  options?: Record<string, unknown>;
  /** SQL: {"url": "postgresql://..."}; Google: {"service_account_json": "..."} or {"oauth_token": "..."}. */
  credentials: Record<string, string>;
};
export type ConnectionProbeRequest = Omit<S["ConnectionProbeRequest"], "mapping"> & { mapping?: ColumnMapping };
/** Which query columns become the example's instruction, input, output and metadata. */
export interface ColumnMapping {
  instruction: string;
  input: string;
  output: string;
  metadata: string[];
}
type SourceKind = S["DatasetVersion"]["source_kind"];
/** A new dataset version from a connection; source_config's shape depends on source_kind. */
export type DatasetVersionRequest<Kind extends SourceKind = SourceKind> = Omit<
  S["DatasetVersionRequest"],
  "source_kind" | "source_config"
> & { source_kind: Kind; source_config: SourceConfigs[Kind] };
interface SourceConfigs {
  sql: { query: string; mapping: ColumnMapping };
  google_docs: { document_ids: string[]; folder_id: string; recipe: string };
  [kind: string]: Record<string, unknown>;
}
/** The multipart upload: the files as the browser holds them, options sent as one JSON field. */
export type UploadRequest = Omit<S["UploadRequest"], "files" | "options"> & {
  files: File[];
  /** Import options: recipe, mapping, chunk_chars, overlap_chars, dedup, scrub_emails, skip_bad_records, base_model... */
  options?: Record<string, unknown>;
};
export type TrainingRunRequest = Omit<S["TrainingRunRequest"], "config"> & {
  /** {"preset": ..., plus only the hyperparameters the user changed; the preset supplies the rest}. */
  config?: Record<string, unknown>;
};
export type DeploymentRequest = S["DeploymentRequest"];
export type ExportRequest = S["ExportRequest"];
export type ExportQuantization = NonNullable<S["Export"]["quantize"]>;
export type PlaygroundChatRequest = S["PlaygroundChatRequest"];
export type ChatMessage = S["ChatMessageRequest"];
export type MembershipCreateRequest = S["MembershipCreateRequest"];
export type MembershipUpdateRequest = S["PatchedMembershipRequest"];
export type ApiTokenRequest = S["ApiTokenRequest"];
export type EventQuery = NonNullable<operations["events_list"]["parameters"]["query"]>;

/** Cursor pages of the append-only logs (?after=<id>). */
export interface CursorPage<T> {
  results: T[];
  next_after: number;
  has_more: boolean;
}



// Evaluations. The summary and per-row answers are JSON the schema leaves free-form.
export type EvalSet = S["EvalSet"];
export type EvalSetVersion = S["EvalSetVersion"];
export type EvaluationTargetRequest = S["TargetRequest"];
export type EvalSetRequest = S["EvalSetRequest"];
export type EvalSetVersionRequest = S["NewVersionRequest"];
export type PlaygroundRowRequest = S["PlaygroundRowRequest"];
export type GateCheckRequest = S["GateCheckRequest"];
export type ScorerRequest = S["ScorerRequest"];
export type JudgeRequest = S["JudgeRequest"];
export type EvaluationRequest = S["EvaluationRequest"];
export type GateRequest = S["GateRequest"];
export type GateStatus = S["GateStatus"];
/** A gate is decided by a scorer or by a judge, the other one null. */
export type Gate = Omit<S["Gate"], "scorer" | "judge"> & { scorer: { name: string } | null; judge: S["Judge"] | null };
/** What an evaluation stored for a target: its kind, the label results use, and its ids. */
export type EvaluationTarget = { kind: string; label: string; run?: number; deployment?: number; model?: string };
export type ScoreInterval = { mean: number | null; low: number | null; high: number | null; n: number; unscored: number };
export type EvaluationSummary = {
  rows?: number;
  targets?: Record<string, { scores: Record<string, ScoreInterval>; answered: number; errors: number; completion_tokens: number; mean_latency_s: number }>;
  pairs?: { first: string; second: string; judged: number; unscored: number; second_wins: number | null; ties: number | null; first_wins: number | null; win_rate: ScoreInterval }[];
};
export type Evaluation = Omit<S["Evaluation"], "targets" | "summary" | "judge" | "scorers"> & {
  targets: EvaluationTarget[];
  scorers: { name: string; pattern?: string }[];
  judge: { mode: string; prompt: string } | null;
  summary: EvaluationSummary;
};
export type RowAnswer = {
  answer: string;
  error: string | null;
  scores: Record<string, number | null>;
  passed: Record<string, boolean | null>;
  judge: { score: number | null; reasoning: string; raw: string; unscored: boolean } | null;
  completion_tokens: number;
  latency_ms: number;
};
export type EvalResult = Omit<S["EvalResult"], "answers" | "pairwise" | "input"> & {
  input: string | { role: string; content: string }[];
  answers: Record<string, RowAnswer>;
  pairwise: { first: string; second: string; winner: string | null; orders: (string | null)[]; raw: string[] }[];
};
export type Feedback = S["Feedback"];
export type GiveFeedbackRequest = S["GiveFeedbackRequest"];
export type FeedbackSummary = S["FeedbackSummary"];
export type FeedbackVersionRequest = S["FeedbackVersionRequest"];
export type FeedbackRowKind = S["FeedbackVersionRequest"]["kind"];
