import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "../../../api/client";
import type { Project, ProjectRequest } from "../../../api/types";
import { projectsKey } from "../../../api/list-projects";

export function createProject(input: ProjectRequest): Promise<Project> {
  return apiFetch<Project>("/api/v1/projects/", { method: "POST", json: input });
}

export function useCreateProject() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createProject,
    onSuccess: (_project, input) => queryClient.invalidateQueries({ queryKey: projectsKey(input.team) }),
  });
}
