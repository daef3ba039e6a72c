import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { LoginRequest, Me } from "../../../api/types";
import { getMe, meKey } from "./get-me";

export async function login(input: LoginRequest): Promise<Me | null> {
  await apiFetch<unknown>("/api/v1/auth/login/", { method: "POST", json: input });
  // Django rotates the CSRF token on login; the next unsafe request reads the new cookie.
  return getMe();
}

export function useLogin() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: login,
    onSuccess: (me) => {
      queryClient.setQueryData(meKey, me);
    },
  });
}
