import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch } from "./client";
import type { Project } from "./types";

export const projectKey = (projectId: number) => ["projects", "detail", projectId] as const;

export function getProject(projectId: number): Promise<Project> {
  return apiFetch<Project>(`/api/v1/projects/${projectId}/`);
}

export const projectQueryOptions = (projectId: number) =>
  queryOptions({ queryKey: projectKey(projectId), queryFn: () => getProject(projectId) });

export function useProject(projectId: number | null) {
  return useQuery({ ...projectQueryOptions(projectId ?? 0), enabled: projectId !== null });
}
