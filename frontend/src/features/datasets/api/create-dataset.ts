import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Dataset, DatasetRequest } from "../../../api/types";
import { datasetsKey } from "../../../api/list-datasets";

export function createDataset(input: DatasetRequest): Promise<Dataset> {
  return apiFetch<Dataset>("/api/v1/datasets/", { method: "POST", json: input });
}

export function useCreateDataset() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createDataset,
    onSuccess: (_d, input) => queryClient.invalidateQueries({ queryKey: datasetsKey(input.project) }),
  });
}
