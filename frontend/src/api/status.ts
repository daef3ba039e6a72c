import type { DatasetVersion, RunStatus } from "./types";

// Whether a job is still at work on a record: its pages and lists poll while one is.

export function isRunActive(status: RunStatus): boolean {
  return status === "queued" || status === "running";
}

export function isVersionBusy(status: DatasetVersion["status"]): boolean {
  return status === "pending" || status === "ingesting" || status === "validating";
}
