import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import { meKey } from "./get-me";

export async function logout(): Promise<void> {
  await apiFetch<unknown>("/api/v1/auth/logout/", { method: "POST" });
}

export function useLogout() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: logout,
    onSuccess: () => {
      // Nothing cached for the previous user may show to the next one.
      queryClient.clear();
      queryClient.setQueryData(meKey, null);
    },
  });
}
