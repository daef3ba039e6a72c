import { useMutation, useQueryClient } from "@tanstack/react-query";
import { apiFetch } from "./client";
import type { EvalSet, EvalSetRequest, EvalSetVersion, EvalSetVersionRequest, PlaygroundRowRequest } from "./types";

/** Where a new version's rows come from: pasted JSONL rows, an uploaded file, the general set, or a
 * Playground conversation (the new version holds the previous one's rows and this one). */
export type VersionSource =
  | { kind: "rows"; rows: unknown[] }
  | { kind: "file"; file: File }
  | { kind: "general" }
  | { kind: "playground"; row: PlaygroundRowRequest };

export interface NewEvalSet {
  project: number;
  name: string;
  source: VersionSource;
}

export function addVersion(evalSetId: number, source: VersionSource): Promise<EvalSetVersion> {
  const url = `/api/v1/eval-sets/${evalSetId}/versions/`;
  if (source.kind === "file") {
    const body = new FormData();
    body.append("file", source.file);
    return apiFetch<EvalSetVersion>(url, { method: "POST", body });
  }
  const json: EvalSetVersionRequest =
    source.kind === "rows" ? { rows: source.rows } : source.kind === "playground" ? { playground: source.row } : { general: true };
  return apiFetch<EvalSetVersion>(url, { method: "POST", json });
}

/** The set, then its first version; a set whose rows were refused is removed again, so the name stays free. */
export async function createEvalSet({ project, name, source }: NewEvalSet): Promise<EvalSetVersion> {
  const evalSet = await apiFetch<EvalSet>("/api/v1/eval-sets/", { method: "POST", json: { project, name } satisfies EvalSetRequest });
  try {
    return await addVersion(evalSet.id, source);
  } catch (error) {
    await apiFetch(`/api/v1/eval-sets/${evalSet.id}/`, { method: "DELETE" }).catch(() => undefined);
    throw error;
  }
}

export function useCreateEvalSet() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: createEvalSet,
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["eval-sets"] }),
  });
}

/** One more row for a set: the set's next version. */
export function useAddVersion() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: ({ evalSetId, source }: { evalSetId: number; source: VersionSource }) => addVersion(evalSetId, source),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["eval-sets"] }),
  });
}
