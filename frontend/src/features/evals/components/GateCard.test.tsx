import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { createMemoryRouter, RouterProvider } from "react-router";
import { EvalsPage, gateRule } from "./EvalsPage";

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const page = (results: unknown[]) => ({ count: results.length, next: null, previous: null, results });

describe("the gate card", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("says in words what decides a gate: a scorer, a judge's score, or a judge against the deployed model", () => {
    const base = { threshold: 0.5, max_drop: null, scorer: null, judge: null };
    expect(gateRule({ ...base, scorer: { name: "must_include" }, max_drop: 0.1 }, "facts")).toBe(
      "must_include on facts reaches 0.5, and no worse than the deployed model by more than 0.1.",
    );
    expect(gateRule({ ...base, threshold: 4, judge: { mode: "pointwise", target: { kind: "deployment", label: "j" } } }, "facts")).toBe(
      "a judge's mean score (1-5) on facts reaches 4.",
    );
    expect(gateRule({ ...base, judge: { mode: "pairwise", target: { kind: "deployment", label: "j" } } }, "facts")).toBe(
      "the run's win rate against the deployed model, by a pairwise judge on facts, reaches 0.5.",
    );
  });

  it("sets a gate decided by a pairwise judge served by a deployment of the project", async () => {
    document.cookie = "csrftoken=t; path=/";
    const posted: unknown[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init?: RequestInit) => {
        if (init?.method === "POST") {
          posted.push(JSON.parse(String(init.body)));
          return json({ error: { code: "invalid", message: "threshold: A win rate", fields: { threshold: ["A win rate: from 0 to 1 (0.5: as good as deployed)."] } } }, 400);
        }
        if (url.startsWith("/api/v1/eval-sets/")) return json(page([{ id: 7, project: 3, name: "facts", latest_version: 41 }]));
        if (url.startsWith("/api/v1/deployments/")) return json(page([{ id: 5, project: 3, name: "judge-bot", status: "ready" }]));
        return json(page([]));
      }),
    );
    const router = createMemoryRouter([{ path: "/projects/:projectId/evals", element: <EvalsPage /> }], { initialEntries: ["/projects/3/evals"] });
    render(
      <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
        <RouterProvider router={router} />
      </QueryClientProvider>,
    );
    const form = await screen.findByRole("form", { name: "Gate" });
    await within(form).findByRole("option", { name: "facts" });
    await userEvent.type(within(form).getByLabelText("Max drop against the deployed model"), "0.1");
    await userEvent.selectOptions(within(form).getByLabelText("Decided by"), "judge:pairwise");
    expect(within(form).queryByLabelText("Max drop against the deployed model")).not.toBeInTheDocument();
    expect(await within(form).findByRole("option", { name: "judge-bot" })).toBeInTheDocument();
    const threshold = within(form).getByLabelText("Threshold");
    await userEvent.clear(threshold);
    await userEvent.type(threshold, "2");
    await userEvent.click(within(form).getByRole("button", { name: "Save the gate" }));
    expect(await within(form).findByText("A win rate: from 0 to 1 (0.5: as good as deployed).")).toBeInTheDocument();
    expect(posted).toEqual([
      { project: 3, eval_set: 7, scorer: null, judge: { mode: "pairwise", target: { kind: "deployment", deployment: 5 } }, threshold: 2, max_drop: null },
    ]);
  });
});
