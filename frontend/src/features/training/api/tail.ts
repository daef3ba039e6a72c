import { useQuery, useQueryClient, type QueryKey } from "@tanstack/react-query";
import { apiFetch, resultsOf, type Page, type RequestOptions } from "../../../api/client";

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
      const cursor = previous?.cursor ?? 0;
      const fresh: T[] = [];
      // Drain every page of what is new (the first load of a finished run may span pages).
      for (let page = 1; page <= 50; page += 1) {
        const data = await apiFetch<Page<T> | T[]>(path, { query: { ...query, after: cursor || undefined, page_size: 500, page }, signal });
        fresh.push(...resultsOf(data));
        if (Array.isArray(data) || !data.next) break;
      }
      if (!fresh.length && previous) return previous;
      const items = [...(previous?.items ?? []), ...fresh].slice(-limit);
      return { items, cursor: fresh.length ? Math.max(cursor, ...fresh.map((i) => i.id)) : cursor };
    },
    refetchInterval: live ? interval : false,
    staleTime: live ? 0 : Infinity,
  });
}
