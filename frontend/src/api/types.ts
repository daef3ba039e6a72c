// The API's shapes, named once for the features to import. Until the control plane's
// schema is generated into schema.d.ts, these follow the documented contract and models.
export type Role = "owner" | "admin" | "member" | "viewer";

export interface TeamRef {
  id: number;
  name: string;
  slug: string;
  role: Role;
}

export interface Me {
  id: number;
  username: string;
  email: string;
  teams: TeamRef[];
}

export interface Project {
  id: number;
  team: number;
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
}

export type Scope = "read" | "write" | "inference";

export interface ApiToken {
  id: number;
  name: string;
  prefix: string;
  team: number;
  scopes: Scope[];
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

/** The create answer: the only time the secret is shown. */
export interface CreatedApiToken extends ApiToken {
  token: string;
}

export interface UserRef {
  id: number;
  username: string;
  email: string;
}

export interface Membership {
  id: number;
  team: number;
  user: UserRef;
  role: Role;
  created_at: string;
}

export interface AuditEvent {
  id: number;
  team: number;
  project: number | null;
  actor: string | null;
  action: string;
  target_type: string;
  target_id: string | number | null;
  target_repr?: string;
  details: Record<string, unknown>;
  created_at: string;
}

export interface Dataset {
  id: number;
  project: number;
  name: string;
  description: string;
  created_at: string;
  updated_at?: string;
  version_count?: number;
  latest_version?: DatasetVersion | null;
}

export type DatasetVersionStatus = "pending" | "ingesting" | "validating" | "ready" | "failed";

export interface InvalidRow {
  line: number;
  field?: string | null;
  reason: string;
}

export interface ValidationReport {
  total_rows?: number;
  valid_rows?: number;
  invalid_rows?: number | InvalidRow[];
  invalid?: InvalidRow[];
  errors?: InvalidRow[];
  duplicates?: number;
  empty_outputs?: number;
  too_long?: number;
  rows_over_context?: number;
  [key: string]: unknown;
}

export interface TokenHistogram {
  /** Bucket edges (n + 1) and counts (n), or explicit buckets. */
  edges?: number[];
  counts?: number[];
  buckets?: { start: number; end: number; count: number }[];
}

export interface DatasetVersion {
  id: number;
  dataset: number;
  number: number;
  note: string;
  status: DatasetVersionStatus;
  source_kind: string;
  source_config?: Record<string, unknown>;
  sha256: string;
  size_bytes: number | null;
  row_count: number | null;
  stats: { token_histogram?: TokenHistogram; token_lengths?: TokenHistogram; [key: string]: unknown };
  validation_report: ValidationReport;
  error: string;
  progress: number;
  progress_message: string;
  created_at: string;
  started_at?: string | null;
  finished_at?: string | null;
}

/** One stretch of a rendered row: trained = the loss counts these tokens. */
export interface PreviewSegment {
  text: string;
  trained: boolean;
}

export interface PreviewRow {
  line: number;
  row: Record<string, unknown>;
  rendered?: string;
  segments?: PreviewSegment[];
  token_count?: number;
  trained_token_count?: number;
}

export interface VersionPreview {
  count?: number;
  base_model?: string;
  results: PreviewRow[];
  next?: string | null;
  previous?: string | null;
}

export interface DataConnection {
  id: number;
  project: number;
  name: string;
  kind: "sql" | "google";
  options: Record<string, unknown>;
  created_at: string;
}

export interface QueryPreview {
  columns: string[];
  rows: unknown[][] | Record<string, unknown>[];
}

export type RunStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";

export interface EvalSample {
  prompt: string;
  expected: string;
  generated: string;
  exact_match?: boolean;
  rouge_l?: number;
}

export interface TrainingRun {
  id: number;
  project: number;
  name: string;
  dataset_version: number;
  validation_version?: number | null;
  base_model: string;
  method: "lora" | "full";
  config: Record<string, unknown>;
  status: RunStatus;
  attempt: number;
  progress_step: number;
  progress_total: number | null;
  eta_seconds: number | null;
  tokens_per_second: number | null;
  queue_position?: number | null;
  started_at: string | null;
  finished_at: string | null;
  error: string;
  cancel_requested?: boolean;
  summary_metrics: Record<string, number>;
  eval_results: { samples?: EvalSample[]; eval_loss?: number; perplexity?: number; exact_match?: number; rouge_l?: number; [key: string]: unknown };
  best_checkpoint?: number | null;
  created_at: string;
  created_by?: string | null;
}

export interface RunMetric {
  id: number;
  step: number;
  name: string;
  value: number;
  attempt?: number;
}

export interface ProjectEvent {
  id: number;
  created_at: string;
  level: "debug" | "info" | "warning" | "error";
  source: string;
  message: string;
  project?: number;
  run?: number | null;
  dataset_version?: number | null;
  deployment?: number | null;
  export?: number | null;
  data?: Record<string, unknown>;
}

export interface Checkpoint {
  id: number;
  run: number;
  attempt: number;
  step: number;
  eval_loss: number | null;
  is_best: boolean;
  created_at: string;
}

export interface RunEstimate {
  steps?: number;
  tokens?: number;
  seconds?: number;
  basis?: string;
}
