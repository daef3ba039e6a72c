// The API's shapes, named once for the features to import. Everything comes from the schema
// generated from the backend (schema.d.ts, `npm run gen:api`); only the JSON payloads the schema
// leaves as free-form objects (reports, statistics, configs) are refined here.
import type { components } from "./schema";

type S = components["schemas"];

export type Role = S["RoleEnum"];
export type Scope = S["ScopesEnum"];
export type TeamRef = S["TeamOfUser"];
export type Me = S["Me"];
export type Project = S["Project"];
export type ApiToken = S["ApiToken"];
export type CreatedApiToken = S["ApiTokenCreated"];
export type UserRef = S["UserSummary"];
export type Membership = S["Membership"];
export type AuditEvent = Omit<S["AuditEvent"], "changes"> & { changes: Record<string, unknown> };
export type Dataset = S["Dataset"];
export type DatasetVersionStatus = S["DatasetVersionStatusEnum"];
export type ValidationReport = S["ValidationReport"];
export type InvalidRow = S["RowProblem"];
export type TokenHistogram = S["TokenHistogram"];
export type PreviewSegment = S["PreviewSegment"];
export type PreviewRow = S["PreviewRow"];
export type VersionPreview = S["VersionPreview"];
export type QueryPreview = S["ConnectionPreview"];
export type ConnectionTestResult = S["ConnectionTestResult"];
export type DatasetVersion = Omit<S["DatasetVersion"], "stats" | "validation_report" | "source_config"> & {
  stats: Record<string, unknown>;
  /** Empty until validation has run. */
  validation_report: Partial<ValidationReport>;
  source_config?: Record<string, unknown>;
};
export type DataConnection = Omit<S["DataConnection"], "options"> & { options: Record<string, unknown> };
export type RunStatus = S["TrainingRunStatusEnum"];
export type TrainingRun = Omit<S["TrainingRun"], "config" | "summary_metrics" | "eval_results"> & {
  config: Record<string, unknown>;
  summary_metrics: Record<string, number>;
  eval_results: { samples?: EvalSample[]; eval_loss?: number; perplexity?: number; exact_match?: number; rouge_l?: number; [key: string]: unknown };
};
export type RunEstimate = S["RunEstimate"];
export type TrainingOptions = S["TrainingOptions"];
export type Hyperparameter = S["Hyperparameter"];
export type TrainingPreset = Omit<S["TrainingPreset"], "resolved" | "overrides"> & {
  overrides: Record<string, unknown>;
  /** The full config per method ("lora", "full"). */
  resolved: Record<string, Record<string, unknown>>;
};
/** One metric's curve rows: {"step": 10, "<run id>": value, ...}. */
export type ComparisonRow = Record<string, number>;
export interface ComparedRun {
  id: number;
  name: string;
  status: RunStatus;
  attempt: number;
  base_model: string;
  method: "lora" | "full";
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
export type DeploymentStatus = S["DeploymentStatusEnum"];
export type Runtime = S["RuntimeEnum"];
export type Export = Omit<S["Export"], "verification"> & { verification: Record<string, unknown> };
export type ExportFormat = S["FormatEnum"];

/** Cursor pages of the append-only logs (?after=<id>). */
export interface CursorPage<T> {
  results: T[];
  next_after: number;
  has_more: boolean;
}

export interface EvalSample {
  prompt: string;
  expected: string;
  generated: string;
  exact_match?: boolean;
  rouge_l?: number;
}

