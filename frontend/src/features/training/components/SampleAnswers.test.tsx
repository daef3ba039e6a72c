import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import { createMemoryRouter, RouterProvider } from "react-router";
import type { Evaluation } from "../../../api/types";
import { SampleAnswers } from "./SampleAnswers";

function json(body: unknown) {
  return new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });
}

const score = (mean: number) => ({ mean, low: mean, high: mean, n: 2, unscored: 0 });
const answer = (text: string, error: string | null = null) => ({ answer: text, error, scores: {}, passed: {}, judge: null, completion_tokens: 2, latency_ms: 5 });

const evaluation = {
  id: 21, name: "facts: validation rows", status: "succeeded", purpose: "run", rows_done: 40, row_count: 40,
  targets: [{ kind: "base", label: "base: smollm2" }, { kind: "run", label: "facts" }],
  scorers: [{ name: "rouge_l" }], judge: null,
  summary: { targets: { "base: smollm2": { scores: { rouge_l: score(0.125) } }, facts: { scores: { rouge_l: score(0.75) } } } },
} as unknown as Evaluation;

describe("SampleAnswers", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("shows the first rows of the run's evaluation, both targets' answers, their means and a link to every row", async () => {
    const asked: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        asked.push(url);
        return json({
          count: 40, next: "more", previous: null,
          results: [
            { id: 1, index: 0, input: [{ role: "user", content: "Capital of Zorbland?" }], reference: "Quillport", must_include: [], tags: [], regression: false, disagreement: true, pairwise: [],
              answers: { "base: smollm2": answer("Paris"), facts: answer("Quillport") } },
            { id: 2, index: 1, input: "Say hi", reference: null, must_include: [], tags: [], regression: false, disagreement: false, pairwise: [],
              answers: { "base: smollm2": answer("", "the prompt does not fit"), facts: answer("hi") } },
          ],
        });
      }),
    );
    const router = createMemoryRouter([{ path: "/", element: <SampleAnswers projectId={3} evaluation={evaluation} /> }]);
    render(
      <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
        <RouterProvider router={router} />
      </QueryClientProvider>,
    );
    const section = screen.getByRole("region", { name: "Sample answers: facts: validation rows" });
    const table = await within(section).findByRole("table");
    expect(within(table).getAllByRole("columnheader").map((th) => th.textContent)).toEqual(["Prompt", "Expected", "base: smollm2", "facts"]);
    const first = within(table).getByText("Capital of Zorbland?").closest("tr")!;
    expect(within(first).getByText("Paris")).toBeInTheDocument();
    expect(within(first).getByText("Quillport", { selector: "td:last-child" })).toBeInTheDocument();
    expect(within(table).getByText("the prompt does not fit")).toBeInTheDocument();
    expect(within(section).getByText(/base: smollm2: rouge_l 0.125 · facts: rouge_l 0.75/)).toBeInTheDocument();
    expect(within(section).getByRole("link", { name: "All 40 rows and scores" })).toHaveAttribute("href", "/projects/3/evals/21");
    expect(asked).toEqual(["/api/v1/evaluations/21/results/?page_size=5"]);
  });
});
