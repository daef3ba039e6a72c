import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, isApiError } from "../../../api/client";
import type { Me } from "../../../api/types";

export const meKey = ["auth", "me"] as const;

/** The signed-in user with their teams, or null when signed out. */
export async function getMe(): Promise<Me | null> {
  try {
    return await apiFetch<Me>("/api/v1/auth/me/");
  } catch (error) {
    if (isApiError(error) && (error.status === 401 || error.status === 403)) return null;
    throw error;
  }
}

export const meQueryOptions = () =>
  queryOptions({
    queryKey: meKey,
    queryFn: getMe,
    staleTime: 60_000,
    retry: (count, error) => !(isApiError(error) && error.status < 500) && count < 2,
  });

export function useMe() {
  return useQuery(meQueryOptions());
}
