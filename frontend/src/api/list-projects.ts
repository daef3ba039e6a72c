import { queryOptions, useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "./client";
import type { Project } from "./types";

export const projectsKey = (teamId: number) => ["projects", { teamId }] as const;

export function listProjects(teamId: number): Promise<Page<Project>> {
  return apiFetch<Page<Project>>("/api/v1/projects/", { query: { team: teamId, page_size: 100 } });
}

export const projectsQueryOptions = (teamId: number) =>
  queryOptions({ queryKey: projectsKey(teamId), queryFn: () => listProjects(teamId) });

export function useProjects(teamId: number) {
  return useQuery(projectsQueryOptions(teamId));
}
