import type { ReactNode } from "react";

type Tone = "neutral" | "success" | "danger" | "warning" | "info" | "accent";

export function Badge({ tone = "neutral", children, title }: { tone?: Tone; children: ReactNode; title?: string }) {
  return (
    <span className={`badge ${tone === "neutral" ? "" : `badge-${tone}`}`} title={title}>
      {children}
    </span>
  );
}

const STATUS_TONES: Record<string, Tone> = {
  succeeded: "success",
  ready: "success",
  valid: "success",
  validated: "success",
  completed: "success",
  active: "success",
  running: "info",
  validating: "info",
  validating_files: "info",
  ingesting: "info",
  processing: "info",
  deploying: "info",
  exporting: "info",
  queued: "accent",
  pending: "accent",
  cancelling: "warning",
  cancelled: "warning",
  stopped: "neutral",
  revoked: "neutral",
  expired: "neutral",
  failed: "danger",
  invalid: "danger",
  error: "danger",
};

/** One colour per lifecycle status, the same on every page. */
export function StatusBadge({ status }: { status: string | null | undefined }) {
  const value = status ?? "unknown";
  const tone = STATUS_TONES[value] ?? "neutral";
  return <Badge tone={tone}>{value.replace(/_/g, " ")}</Badge>;
}
