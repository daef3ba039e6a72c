import type { ProjectEvent } from "../../../api/types";
import { useTail } from "../../../api/tail";

export const runEventsKey = (runId: number) => ["runs", "events", runId] as const;

export function useRunEvents(runId: number, live: boolean) {
  return useTail<ProjectEvent>({ queryKey: runEventsKey(runId), path: `/api/v1/runs/${runId}/events/`, live, limit: 2000 });
}
