import { queryOptions, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";
import type { DataConnection, DataConnectionRequest } from "../../../api/types";

export const connectionsKey = (projectId: number) => ["connections", { projectId }] as const;

export function listConnections(projectId: number): Promise<Page<DataConnection>> {
  return apiFetch<Page<DataConnection>>("/api/v1/connections/", { query: { project: projectId, page_size: 200 } });
}

export const connectionsQueryOptions = (projectId: number) =>
  queryOptions({ queryKey: connectionsKey(projectId), queryFn: () => listConnections(projectId) });

export function useConnections(projectId: number) {
  return useQuery(connectionsQueryOptions(projectId));
}

export function createConnection(input: DataConnectionRequest): Promise<DataConnection> {
  return apiFetch<DataConnection>("/api/v1/connections/", { method: "POST", json: input });
}

export function useCreateConnection() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createConnection,
    onSuccess: (_c, input) => queryClient.invalidateQueries({ queryKey: connectionsKey(input.project) }),
  });
}
