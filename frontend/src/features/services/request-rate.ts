import { useState } from "react";
import type { Deployment } from "../../api/types";

export interface StatsSample {
  requests: number;
  /** When the service's counters were copied (ms since the epoch). */
  at: number;
}

/**
 * Requests per minute between the two newest samples of a deployment's counters. null until there
 * are two samples far enough apart, or when the counter went back (the service restarted).
 */
export function requestsPerMinute(samples: StatsSample[]): number | null {
  if (samples.length < 2) return null;
  const [before, now] = samples.slice(-2) as [StatsSample, StatsSample];
  const seconds = (now.at - before.at) / 1000;
  if (seconds < 1 || now.requests < before.requests) return null;
  return ((now.requests - before.requests) / seconds) * 60;
}

/** Keeps the last samples of the deployment's statistics as the list refreshes them. */
export function useRequestRate(deployment: Deployment): number | null {
  const [samples, setSamples] = useState<StatsSample[]>([]);
  const { stats_updated_at: updatedAt, request_count: requests } = deployment;
  // A new copy of the counters is a new sample, taken while rendering (React's way of deriving
  // state from a changed prop) rather than in an effect that would render twice.
  const at = updatedAt ? Date.parse(updatedAt) : null;
  if (at !== null && samples.at(-1)?.at !== at) setSamples([...samples.slice(-1), { requests, at }]);
  return requestsPerMinute(samples);
}
