import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { ApiTokenRequest, CreatedApiToken } from "../../../api/types";
import { tokensKey } from "./list-tokens";

export function createToken(input: ApiTokenRequest): Promise<CreatedApiToken> {
  return apiFetch<CreatedApiToken>("/api/v1/tokens/", { method: "POST", json: input });
}

export function useCreateToken() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createToken,
    onSuccess: (_token, input) => queryClient.invalidateQueries({ queryKey: tokensKey(input.team) }),
  });
}
