import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { CurrentTeamContextProvider } from "../../../lib/current-team";
import { ExportsCard } from "./ExportsCard";

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const team = { id: 1, name: "Acme", slug: "acme", role: "member" as const };
const warning = "KEPT ANYWAY BELOW ITS QUALITY BUDGET: the int8 model misses its quality budget on this CPU";
const kept = {
  id: 7, project: 3, run: 42, checkpoint: null, format: "onnx", quantize: "int8", runtime: "", keep_anyway: true,
  status: "succeeded", filename: "faq-final-onnx-int8-BELOW-QUALITY-BUDGET.zip", size_bytes: 1000,
  verification: { warning }, quality_warning: warning, error: "", progress: 1, heartbeat_at: null,
  started_at: null, finished_at: null, created_by: null, created_at: "2026-12-06T10:00:00Z",
};

function renderCard(posted: unknown[]) {
  document.cookie = "csrftoken=t; path=/";
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init?: RequestInit) => {
      if (url.startsWith("/api/v1/exports/") && init?.method === "POST") {
        posted.push(JSON.parse(String(init.body)));
        return json(201, { ...kept, id: 8, status: "pending" });
      }
      if (url.startsWith("/api/v1/exports/")) return json(200, { count: 1, next: null, previous: null, results: [kept] });
      return json(200, { count: 1, next: null, previous: null, results: [{ id: 42, name: "faq", status: "succeeded" }] });
    }),
  );
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <CurrentTeamContextProvider value={{ team, teams: [team], role: "member", canWrite: true, canManage: false, setTeamId: () => {} }}>
        <ExportsCard projectId={3} />
      </CurrentTeamContextProvider>
    </QueryClientProvider>,
  );
}

describe("ExportsCard", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("warns loudly about an export kept below its quality budget, and its download says so", async () => {
    renderCard([]);
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent(warning);
    const row = alert.closest("tr")!;
    expect(within(row).getByRole("link", { name: "Download (below quality budget)" })).toHaveAttribute("href", "/api/v1/exports/7/download/");
  });

  it("offers keep-anyway only for a quantized export and sends it", async () => {
    const posted: unknown[] = [];
    renderCard(posted);
    const user = userEvent.setup();
    const form = await screen.findByRole("form", { name: "New export" });
    await user.selectOptions(within(form).getByLabelText("Format"), "onnx");
    expect(within(form).queryByRole("checkbox")).not.toBeInTheDocument();
    await user.selectOptions(within(form).getByLabelText("Quantization"), "int8");
    await user.click(within(form).getByRole("checkbox", { name: /Keep it even if it misses the quality budget/ }));
    await user.click(within(form).getByRole("button", { name: "Export" }));
    await vi.waitFor(() => expect(posted).toEqual([{ run: 42, checkpoint: null, format: "onnx", quantize: "int8", keep_anyway: true }]));
  });

  it("offers a GGUF as f16, q8_0 or q4_k_m, and forgets another format's quantization", async () => {
    const posted: unknown[] = [];
    renderCard(posted);
    const user = userEvent.setup();
    const form = await screen.findByRole("form", { name: "New export" });
    await user.selectOptions(within(form).getByLabelText("Format"), "onnx");
    await user.selectOptions(within(form).getByLabelText("Quantization"), "int8");
    await user.selectOptions(within(form).getByLabelText("Format"), "gguf");
    const quantization = within(form).getByLabelText("Quantization");
    expect(within(quantization).getAllByRole("option").map((o) => o.getAttribute("value"))).toEqual(["none", "q8_0", "q4_k_m"]);
    expect(quantization).toHaveValue("none");
    await user.selectOptions(quantization, "q4_k_m");
    await user.click(within(form).getByRole("button", { name: "Export" }));
    await vi.waitFor(() => expect(posted).toEqual([{ run: 42, checkpoint: null, format: "gguf", quantize: "q4_k_m", keep_anyway: false }]));
  });

  it("offers a bundle's runtimes, each with its own quantizations, and sends the runtime", async () => {
    const posted: unknown[] = [];
    renderCard(posted);
    const user = userEvent.setup();
    const form = await screen.findByRole("form", { name: "New export" });
    expect(within(form).queryByLabelText("Runtime")).not.toBeInTheDocument();
    await user.selectOptions(within(form).getByLabelText("Format"), "bundle");
    const runtime = within(form).getByLabelText("Runtime");
    expect(within(runtime).getAllByRole("option").map((o) => o.getAttribute("value"))).toEqual(["pytorch", "onnx", "llama.cpp"]);
    expect(within(form).queryByLabelText("Quantization")).not.toBeInTheDocument(); // PyTorch keeps the trained weights
    await user.selectOptions(runtime, "onnx");
    await user.selectOptions(within(form).getByLabelText("Quantization"), "int8");
    await user.selectOptions(runtime, "llama.cpp");
    const quantization = within(form).getByLabelText("Quantization");
    expect(within(quantization).getAllByRole("option").map((o) => o.getAttribute("value"))).toEqual(["none", "q8_0", "q4_k_m"]);
    expect(quantization).toHaveValue("none"); // int8 is not a GGUF type: forgotten
    await user.selectOptions(quantization, "q8_0");
    await user.click(within(form).getByRole("button", { name: "Export" }));
    await vi.waitFor(() =>
      expect(posted).toEqual([{ run: 42, checkpoint: null, format: "bundle", quantize: "q8_0", runtime: "llama.cpp", keep_anyway: false }]),
    );
  });
});
