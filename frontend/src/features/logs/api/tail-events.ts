import type { ProjectEvent } from "../../../api/types";
import { useTail } from "../../training/api/tail";

export interface EventFilters {
  team: number;
  project?: number;
  run?: number;
  min_level?: string;
  source?: string;
  q?: string;
}

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
