import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import { createMemoryRouter, RouterProvider } from "react-router";
import { KnowledgeCard } from "./VersionPage";

function renderCard(stats: Record<string, unknown>) {
  const router = createMemoryRouter([{ path: "/", element: <KnowledgeCard stats={stats} projectId={3} /> }]);
  render(
    <QueryClientProvider client={new QueryClient()}>
      <RouterProvider router={router} />
    </QueryClientProvider>,
  );
}

const source = (facts: number, kept: number, dropped: Record<string, number>) => ({
  knowledge: { facts, rows_kept: kept, rows_dropped: Object.values(dropped).reduce((a, b) => a + b, 0), chunks_failed: 1, teacher_tokens: 1000, dropped_by_reason: dropped },
});

describe("KnowledgeCard", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("adds up the teacher's figures over the documents and lists the fact check's questions from its eval set version", async () => {
    const fetched: string[] = [];
    vi.stubGlobal("fetch", vi.fn(async (url: string) => {
      fetched.push(String(url));
      const rows = [{ index: 0, input: "What is my yearly holiday allowance?", reference: "Staff get 27 days of paid leave a year.", must_include: ["27", "days"] }];
      return new Response(JSON.stringify({ count: 1, next: null, previous: null, results: rows }), { status: 200, headers: { "Content-Type": "application/json" } });
    }));
    renderCard({
      sources: [source(2, 8, { "answer not in the chunk": 1 }), source(3, 12, { "answer not in the chunk": 2, "fact not in the chunk": 1 })],
      fact_check: { eval_set: 4, eval_set_name: "Handbook fact check", eval_set_version: 7, eval_set_version_number: 2, questions: 1 },
    });

    expect(screen.getByText("Facts").previousSibling).toHaveTextContent("5");
    expect(screen.getByText("Rows kept").previousSibling).toHaveTextContent("20");
    expect(screen.getByText("Teacher tokens").previousSibling).toHaveTextContent("2,000");
    expect(screen.getByText(/Dropped: 3 × answer not in the chunk; 1 × fact not in the chunk/)).toBeInTheDocument();
    expect(screen.getByLabelText("Fact check")).toHaveTextContent("1 held-out question saved as eval set Handbook fact check (version 2)");
    const table = await screen.findByRole("table", { name: "Fact-check questions" });
    const row = within(table).getByRole("row", { name: /yearly holiday allowance/ });
    expect(row).toHaveTextContent("27, days");
    expect(row).toHaveTextContent("Staff get 27 days of paid leave a year.");
    expect(fetched).toEqual(["/api/v1/eval-set-versions/7/rows/?page_size=100"]);
    expect(screen.getByRole("link", { name: "Evaluate" })).toHaveAttribute("href", "/projects/3/evals");
  });

  it("says so when the teacher wrote no question to hold out, asking for none", () => {
    const fetchSpy = vi.fn();
    vi.stubGlobal("fetch", fetchSpy);
    renderCard({ sources: [source(0, 0, {})] });
    expect(screen.getByText(/No fact check: the teacher wrote no question that could be held out/)).toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "Evaluate" })).not.toBeInTheDocument();
    expect(fetchSpy).not.toHaveBeenCalled();
  });
});
