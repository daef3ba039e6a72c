import { useParams } from "react-router";

/** The :projectId of the current route as a number (routes only match digits). */
export function useProjectId(): number {
  const { projectId } = useParams();
  return Number(projectId);
}
