import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { Deployment } from "./types";

export interface DeploymentFilters {
  projectId?: number;
  teamId?: number;
}

export const deploymentsKey = (filters: DeploymentFilters) => ["deployments", filters] as const;

export function listDeployments({ projectId, teamId }: DeploymentFilters): Promise<Page<Deployment>> {
  return apiFetch<Page<Deployment>>("/api/v1/deployments/", { query: { project: projectId, team: teamId, page_size: 200 } });
}

export const deploymentsQueryOptions = (filters: DeploymentFilters) =>
  queryOptions({
    queryKey: deploymentsKey(filters),
    queryFn: () => listDeployments(filters),
    // Pending deployments turn ready within seconds; request statistics refresh while serving.
    refetchInterval: (query) => (query.state.data?.results.some((d) => d.status === "pending") ? 2000 : 10_000),
  });

export function useDeployments(filters: DeploymentFilters) {
  return useQuery(deploymentsQueryOptions(filters));
}
