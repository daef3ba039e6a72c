import { QueryCache, QueryClient } from "@tanstack/react-query";
import { isApiError } from "../api/client";
import { meKey } from "../features/auth/api/get-me";

export function createQueryClient(): QueryClient {
  const queryClient: QueryClient = new QueryClient({
    queryCache: new QueryCache({
      onError: (error) => {
        // A session that expired mid-use: drop the user so RequireAuth sends them to sign in.
        if (isApiError(error) && error.status === 401) queryClient.setQueryData(meKey, null);
      },
    }),
    defaultOptions: {
      queries: {
        staleTime: 5_000,
        refetchOnWindowFocus: true,
        // Client errors (403, 404, 400) will not fix themselves; retry only server and network trouble.
        retry: (count, error) => (isApiError(error) && error.status >= 400 && error.status < 500 ? false : count < 2),
      },
    },
  });
  return queryClient;
}
