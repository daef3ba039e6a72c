import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";

export function revokeToken(tokenId: number): Promise<void> {
  return apiFetch<void>(`/api/v1/tokens/${tokenId}/`, { method: "DELETE" });
}

export function useRevokeToken() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: revokeToken,
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["tokens"] }),
  });
}
