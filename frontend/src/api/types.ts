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
