import type { EventQuery, ProjectEvent } from "../../../api/types";
import { useTail } from "../../../api/tail";

export type EventFilters = Pick<EventQuery, "project" | "run" | "min_level" | "source" | "q"> & { team: number };

export const eventsKey = (filters: EventFilters) => ["events", filters] as const;

/** The live tail of run, ingest and deployment events; each filter change starts a new tail. */
export function useEventTail(filters: EventFilters, follow: boolean) {
  return useTail<ProjectEvent>({
    queryKey: eventsKey(filters),
    path: "/api/v1/events/",
    query: { ...filters },
    live: follow,
    limit: 5000,
  });
}
