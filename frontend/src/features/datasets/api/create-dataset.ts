import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Dataset } from "../../../api/types";
import { datasetsKey } from "./list-datasets";

export interface CreateDatasetInput {
  project: number;
  name: string;
  description: string;
}

export function createDataset(input: CreateDatasetInput): Promise<Dataset> {
  return apiFetch<Dataset>("/api/v1/datasets/", { method: "POST", json: input });
}

export function useCreateDataset() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createDataset,
    onSuccess: (_d, input) => queryClient.invalidateQueries({ queryKey: datasetsKey(input.project) }),
  });
}
