import { useQuery, useQueryClient, type QueryKey } from "@tanstack/react-query";
import { apiFetch, type RequestOptions } from "./client";
import type { CursorPage } from "./types";

export interface Tail<T> {
  items: T[];
  /** The id of the last item: the cursor for ?after=. */
  cursor: number;
}

/**
 * Follows an append-only list (events, metric points) with ?after=<id>: each poll asks only for
 * what is new and appends it to the cached list, so a long run is never re-read.
 */
export function useTail<T extends { id: number }>({
  queryKey,
  path,
  query,
  live,
  interval = 2000,
  limit = 5000,
}: {
  queryKey: QueryKey;
  path: string;
  query?: RequestOptions["query"];
  live: boolean;
  interval?: number;
  /** Oldest items are dropped past this many, to bound memory on long tails. */
  limit?: number;
}) {
  const queryClient = useQueryClient();
  return useQuery<Tail<T>>({
    queryKey,
    queryFn: async ({ signal }) => {
      const previous = queryClient.getQueryData<Tail<T>>(queryKey);
      let cursor = previous?.cursor ?? 0;
      const fresh: T[] = [];
      // Drain what is new (the first load of a finished run may take several pages).
      for (let page = 0; page < 50; page += 1) {
        const data = await apiFetch<CursorPage<T>>(path, { query: { ...query, after: cursor || undefined, limit: 1000 }, signal });
        fresh.push(...data.results);
        cursor = Math.max(cursor, data.next_after ?? 0, ...data.results.map((i) => i.id));
        if (!data.has_more) break;
      }
      if (!fresh.length && previous) return previous;
      return { items: [...(previous?.items ?? []), ...fresh].slice(-limit), cursor };
    },
    refetchInterval: live ? interval : false,
    staleTime: live ? 0 : Infinity,
  });
}
