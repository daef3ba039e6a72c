import { useQuery } from "@tanstack/react-query";
import { apiFetch, type Page } from "../../../api/client";

/** What the knowledge recipe's import recorded about its held-out fact check (version.stats.fact_check). */
export interface FactCheckInfo {
  eval_set: number;
  eval_set_name: string;
  eval_set_version: number;
  eval_set_version_number: number;
  questions: number;
}

/** One held-out question as the eval set holds it (the rows endpoint's objects carry no schema). */
export interface FactCheckQuestion {
  index: number;
  input: string;
  reference: string | null;
  must_include: string[];
}

/** The fact check's questions: the eval set version the import saved (immutable, so never refetched). */
export function useFactCheckQuestions(evalSetVersionId: number | undefined) {
  return useQuery({
    queryKey: ["eval-set-versions", evalSetVersionId, "rows"],
    queryFn: () => apiFetch<Page<FactCheckQuestion>>(`/api/v1/eval-set-versions/${evalSetVersionId}/rows/`, { query: { page_size: 100 } }),
    enabled: evalSetVersionId !== undefined,
    staleTime: Infinity,
  });
}
