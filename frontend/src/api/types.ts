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
