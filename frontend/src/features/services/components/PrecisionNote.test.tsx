import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { Deployment } from "../../../api/types";
import { CurrentTeamContextProvider } from "../../../lib/current-team";
import { PrecisionNote } from "./PrecisionNote";

const team = { id: 1, name: "Acme", slug: "acme", role: "member" as const };
const fellBack = {
  id: 5, name: "faq", project: 3, run: 42, runtime: "pytorch", precision: "int8", serving_precision: "float32",
  precision_reason: "int8 missed the quality budget (held-out loss +3.10% against PyTorch fp32 (budget +2%)); serving float32",
  precision_quality: { heldout_loss_change: 0.031 }, status: "ready",
} as unknown as Deployment;

function renderNote(deployment: Deployment, patched: unknown[]) {
  document.cookie = "csrftoken=t; path=/";
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init?: RequestInit) => {
      patched.push({ url, method: init?.method, body: JSON.parse(String(init?.body)) });
      return new Response(JSON.stringify({ ...deployment, precision: "float32", serving_precision: "" }), {
        status: 200, headers: { "Content-Type": "application/json" },
      });
    }),
  );
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <CurrentTeamContextProvider value={{ team, teams: [team], role: "member", canWrite: true, canManage: false, setTeamId: () => {} }}>
        <PrecisionNote deployment={deployment} />
      </CurrentTeamContextProvider>
    </QueryClientProvider>,
  );
}

test("shows what serves the deployment and why, and the user's override reloads it", async () => {
  const patched: unknown[] = [];
  renderNote(fellBack, patched);
  expect(screen.getByText("float32", { selector: "strong" })).toBeInTheDocument();
  expect(screen.getByText(/asked for int8/)).toBeInTheDocument();
  expect(screen.getByText(/Why: int8 missed the quality budget/)).toBeInTheDocument();
  await userEvent.selectOptions(screen.getByRole("combobox", { name: "Precision" }), "float32");
  await vi.waitFor(() => expect(patched).toHaveLength(1));
  expect(patched[0]).toMatchObject({ url: "/api/v1/deployments/5/", method: "PATCH", body: { precision: "float32" } });
});

test("an ONNX deployment serves its export's precision: nothing to choose", () => {
  renderNote({ ...fellBack, runtime: "onnx" } as Deployment, []);
  expect(screen.queryByText(/Serving in/)).toBeNull();
});
