import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import { createMemoryRouter, RouterProvider } from "react-router";
import { ComparePage } from "./ComparePage";

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const run = (id: number, name: string, learning_rate: number) => ({
  id, name, status: "succeeded", attempt: 1, base_model: "smollm2-135m-instruct", method: "lora", dataset_version: 5,
  summary_metrics: { eval_loss: 1.5 + id / 100 }, config: { epochs: 1, learning_rate },
});

describe("ComparePage", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("asks the compare endpoint for the ticked runs and marks the settings that differ", async () => {
    const asked: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        asked.push(url);
        return json(200, {
          runs: [run(42, "faq v1", 0.0003), run(43, "faq v2", 0.0001)],
          config_keys: ["epochs", "learning_rate"],
          config_differences: ["learning_rate"],
          metrics: { loss: [{ step: 1, "42": 2.1, "43": 2.3 }], eval_loss: [], learning_rate: [], grad_norm: [], tokens_per_second: [] },
        });
      }),
    );
    const router = createMemoryRouter([{ path: "/projects/:projectId/runs/compare", element: <ComparePage /> }], { initialEntries: ["/projects/3/runs/compare?ids=42,43"] });
    render(
      <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
        <RouterProvider router={router} />
      </QueryClientProvider>,
    );
    expect(await screen.findByRole("heading", { name: "Compare runs" })).toBeInTheDocument();
    expect(asked).toEqual(["/api/v1/runs/compare/?ids=42%2C43"]);
    const differing = screen.getByRole("cell", { name: /^learning_rate\s*\(differs\)$/ }).closest("tr")!;
    expect(within(differing).getByText("0.0003")).toBeInTheDocument();
    expect(within(differing).getByText("0.0001")).toBeInTheDocument();
    expect(screen.getByRole("cell", { name: "epochs" }).closest("tr")).not.toHaveClass("row-differs");
    expect(screen.getByText(/Highlighted rows differ between runs: learning_rate/)).toBeInTheDocument();
  });
});
