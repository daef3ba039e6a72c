import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { createMemoryRouter, RouterProvider } from "react-router";
import { EvaluationPage } from "./EvaluationPage";

function json(body: unknown) {
  return new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });
}

const score = (mean: number) => ({ mean, low: mean - 0.1, high: mean + 0.1, n: 2, unscored: 0 });

const evaluation = {
  id: 11, name: "base vs tuned", status: "succeeded", rows_done: 2, row_count: 2, error: "", gate_passed: null, gate_reason: "",
  targets: [{ kind: "base", label: "base", run: 4 }, { kind: "run", label: "tuned", run: 4 }],
  scorers: [{ name: "must_include" }], judge: { mode: "pairwise", prompt: "..." },
  summary: {
    rows: 2,
    targets: { base: { scores: { must_include: score(0.5) } }, tuned: { scores: { must_include: score(0.25) } } },
    pairs: [{ first: "base", second: "tuned", judged: 2, unscored: 0, second_wins: 0.5, ties: 0.5, first_wins: 0, win_rate: score(0.75) }],
  },
};

const answer = (text: string, passed: boolean) => ({ answer: text, error: null, scores: { must_include: passed ? 1 : 0 }, passed: { must_include: passed }, judge: null, completion_tokens: 3, latency_ms: 10 });

const rows = [
  { id: 1, index: 0, input: "Capital of Zorbland?", reference: "Quillport", must_include: ["Quillport"], tags: [], regression: true, disagreement: true,
    answers: { base: answer("Quillport.", true), tuned: answer("No idea.", false) },
    pairwise: [{ first: "base", second: "tuned", winner: "a", orders: ["a", "a"], raw: ["Winner: A", "Winner: B"] }] },
  { id: 2, index: 1, input: "Say hi", reference: "hi", must_include: [], tags: [], regression: false, disagreement: false,
    answers: { base: answer("hi", true), tuned: answer("hi", true) }, pairwise: [] },
];

describe("EvaluationPage", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("shows the aggregates with intervals, the answers side by side, and asks for regressions only", async () => {
    const asked: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        asked.push(url);
        if (url.startsWith("/api/v1/evaluations/11/results/")) {
          const regressionsOnly = url.includes("regressions=true");
          const results = regressionsOnly ? rows.filter((r) => r.regression) : rows;
          return json({ count: results.length, next: null, previous: null, results });
        }
        return json(evaluation);
      }),
    );
    const router = createMemoryRouter([{ path: "/projects/:projectId/evals/:evaluationId", element: <EvaluationPage /> }], { initialEntries: ["/projects/3/evals/11"] });
    render(
      <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
        <RouterProvider router={router} />
      </QueryClientProvider>,
    );
    expect(await screen.findByRole("heading", { name: "base vs tuned" })).toBeInTheDocument();
    const aggregates = screen.getByRole("table", { name: "Aggregates" });
    expect(within(aggregates).getByText("0.5 [0.4, 0.6]")).toBeInTheDocument();
    expect(within(aggregates).getByText("0.25 [0.15, 0.35]")).toBeInTheDocument();
    expect(screen.getByText(/wins 50% · ties 50% · losses 0%/)).toBeInTheDocument();

    const table = await screen.findByRole("table", { name: "Per-question results" });
    expect(within(table).getAllByRole("row")).toHaveLength(3);
    const changed = within(table).getByText("No idea.").closest("td")!;
    expect(changed).toHaveClass("eval-differs");
    expect(within(table).getByText("Capital of Zorbland?").closest("tr")).toHaveClass("eval-regression");
    expect(within(table).getByText("base wins")).toBeInTheDocument();

    await userEvent.click(screen.getByLabelText(/Regressions only/));
    expect(await screen.findByText("1 rows")).toBeInTheDocument();
    expect(asked.some((url) => url.includes("/results/") && url.includes("regressions=true"))).toBe(true);
    expect(within(screen.getByRole("table", { name: "Per-question results" })).getAllByRole("row")).toHaveLength(2);
  });
});
