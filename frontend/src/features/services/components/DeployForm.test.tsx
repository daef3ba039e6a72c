import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { CurrentTeamContextProvider } from "../../../lib/current-team";
import { DeployForm } from "./DeployForm";
import { runtimeLabel } from "./ServicesPage";

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const team = { id: 1, name: "Acme", slug: "acme", role: "member" as const };
const missing = "The llama.cpp runtime is not available on this platform: llama.cpp's `llama-server` is not installed.";

function renderForm(posted: unknown[], answer: (body: unknown) => Response) {
  document.cookie = "csrftoken=t; path=/";
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init?: RequestInit) => {
      if (url.startsWith("/api/v1/deployments/") && init?.method === "POST") {
        const body = JSON.parse(String(init.body));
        posted.push(body);
        return answer(body);
      }
      if (url.startsWith("/api/v1/runs/")) {
        return json(200, { count: 1, next: null, previous: null, results: [{ id: 42, name: "FAQ bot", status: "succeeded", method: "lora" }] });
      }
      if (url.startsWith("/api/v1/evaluations/gate-status/")) return json(200, { state: "none" });
      return json(200, { count: 0, next: null, previous: null, results: [] });
    }),
  );
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <CurrentTeamContextProvider value={{ team, teams: [team], role: "member", canWrite: true, canManage: false, setTeamId: () => {} }}>
        <DeployForm projectId={3} initialRun={42} onDone={() => {}} />
      </CurrentTeamContextProvider>
    </QueryClientProvider>,
  );
}

describe("DeployForm", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("deploys on llama.cpp with the GGUF type picked, and merged types hide the merge choice", async () => {
    const posted: unknown[] = [];
    renderForm(posted, () => json(201, { id: 5 }));
    const user = userEvent.setup();
    const form = await screen.findByRole("form", { name: "Deploy a run" });
    await screen.findByRole("option", { name: "FAQ bot" });
    expect(within(form).queryByLabelText("GGUF type")).not.toBeInTheDocument();
    await user.selectOptions(within(form).getByLabelText("Runtime"), "llama.cpp");
    expect(within(form).getByText(/Fastest single stream on a CPU/)).toBeInTheDocument();
    expect(within(form).queryByLabelText("Precision")).not.toBeInTheDocument();
    const gguf = within(form).getByLabelText("GGUF type");
    expect(within(gguf).getAllByRole("option").map((o) => o.getAttribute("value"))).toEqual(["f16", "q8_0", "q4_k_m"]);
    expect(within(form).getByRole("checkbox", { name: /Merge the LoRA adapter/ })).toBeInTheDocument();
    await user.selectOptions(gguf, "q4_k_m");
    expect(within(form).queryByRole("checkbox", { name: /Merge the LoRA adapter/ })).not.toBeInTheDocument();
    await user.click(within(form).getByRole("button", { name: "Deploy" }));
    await vi.waitFor(() => expect(posted).toEqual([
      { name: "faq-bot", run: 42, checkpoint: null, runtime: "llama.cpp", merge_adapter: false, gguf_type: "q4_k_m" },
    ]));
  });

  it("shows beside the runtime why llama.cpp cannot be chosen here", async () => {
    renderForm([], () => json(400, { error: { code: "invalid", message: "Invalid input.", fields: { runtime: [missing] } } }));
    const user = userEvent.setup();
    const form = await screen.findByRole("form", { name: "Deploy a run" });
    await screen.findByRole("option", { name: "FAQ bot" });
    await user.selectOptions(within(form).getByLabelText("Runtime"), "llama.cpp");
    await user.click(within(form).getByRole("button", { name: "Deploy" }));
    expect(await within(form).findByText(missing)).toBeInTheDocument();
  });

  it("names the runtime that serves a deployment, with its GGUF on llama.cpp", () => {
    expect(runtimeLabel({ runtime: "llama.cpp", gguf_type: "q4_k_m" })).toBe("served by llama.cpp · GGUF q4_k_m");
    expect(runtimeLabel({ runtime: "onnx", gguf_type: "f16" })).toBe("served by ONNX Runtime");
    expect(runtimeLabel({ runtime: "pytorch", gguf_type: "f16" })).toBe("served by PyTorch");
  });
});
