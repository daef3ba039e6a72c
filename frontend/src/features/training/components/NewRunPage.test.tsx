import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { createMemoryRouter, RouterProvider } from "react-router";
import { NewRunPage } from "./NewRunPage";

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const page = (results: unknown[]) => ({ count: results.length, next: null, previous: null, results });
const hp = (name: string, type: string, def: unknown, help: string, extra: Record<string, unknown> = {}) => ({ name, type, nullable: false, default: def, choices: [], help, ...extra });

// The shape GET /runs/config-options/ answers (tests/training/test_run_config_options.py checks the server side).
const OPTIONS = {
  base_models: [{ name: "smollm2-135m-instruct", hf_id: "HuggingFaceTB/SmolLM2-135M-Instruct", license: "apache-2.0" }],
  hyperparameters: [
    hp("epochs", "float", 3, "passes over the training data"),
    hp("learning_rate", "float", null, "peak learning rate after warmup", { nullable: true }),
    hp("lr_schedule", "choice", "cosine", "learning-rate decay after warmup", { choices: ["cosine", "linear", "constant"] }),
    hp("batch_size", "int", 8, "examples per forward pass"),
    hp("lora_r", "int", 16, "LoRA rank"),
  ],
  presets: [
    { name: "quick", overrides: { epochs: 1, lora_r: 8, learning_rate: 0.0003 }, resolved: { lora: { epochs: 1, learning_rate: 0.0003, lr_schedule: "cosine", batch_size: 8, lora_r: 8 }, full: { epochs: 1, learning_rate: 0.0003, lr_schedule: "cosine", batch_size: 8, lora_r: 8 } } },
    { name: "balanced", overrides: {}, resolved: { lora: { epochs: 3, learning_rate: 0.0002, lr_schedule: "cosine", batch_size: 8, lora_r: 16 }, full: { epochs: 3, learning_rate: 0.00002, lr_schedule: "cosine", batch_size: 8, lora_r: 16 } } },
  ],
  default_preset: "balanced",
};

describe("NewRunPage", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("shows the engine's presets, sends only what changed, and puts the API's reason beside its field", async () => {
    document.cookie = "csrftoken=t; path=/";
    const created: unknown[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init?: RequestInit) => {
        if (url.startsWith("/api/v1/runs/config-options/")) return json(200, OPTIONS);
        if (url.startsWith("/api/v1/dataset-versions/")) return json(200, page([{ id: 5, dataset: 2, number: 1, status: "ready", row_count: 109 }]));
        if (url.startsWith("/api/v1/datasets/")) return json(200, page([{ id: 2, name: "Product FAQ" }]));
        if (url === "/api/v1/runs/estimate/") return json(200, { steps: 14, tokens: 5000, seconds: null, basis: "no finished run yet" });
        if (url === "/api/v1/runs/") {
          created.push(JSON.parse(String(init?.body)));
          return json(400, { error: { code: "invalid", message: "config.batch_size: batch_size must be at least 1, not 0", fields: { "config.batch_size": ["batch_size must be at least 1, not 0"] } } });
        }
        return json(404, { error: { code: "not_found", message: url, fields: {} } });
      }),
    );
    const router = createMemoryRouter([{ path: "/projects/:projectId/runs/new", element: <NewRunPage /> }], { initialEntries: ["/projects/3/runs/new"] });
    render(
      <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
        <RouterProvider router={router} />
      </QueryClientProvider>,
    );
    const user = userEvent.setup();

    expect(await screen.findByLabelText("Learning rate")).toHaveValue(0.0003);
    expect(screen.getByLabelText("Dataset version")).toHaveDisplayValue("Product FAQ v1 (109 rows)");
    expect(screen.getByText("Peak learning rate after warmup.")).toBeInTheDocument();
    await user.click(screen.getByRole("radio", { name: "Balanced" }));
    expect(screen.getByLabelText("Learning rate")).toHaveValue(0.0002);
    expect(screen.getByLabelText("LoRA rank")).toHaveValue(16);
    await user.click(screen.getByRole("radio", { name: "Full fine-tune" }));
    expect(screen.getByLabelText("Learning rate")).toHaveValue(0.00002);
    expect(screen.queryByLabelText("LoRA rank")).not.toBeInTheDocument();
    expect(await screen.findByText(/Estimate: 14 steps/)).toBeInTheDocument();

    await user.clear(screen.getByLabelText("Batch size"));
    await user.type(screen.getByLabelText("Batch size"), "0");
    await user.selectOptions(screen.getByLabelText("Schedule"), "linear");
    await user.click(screen.getByRole("button", { name: "Start training" }));

    await waitFor(() => expect(created).toHaveLength(1));
    expect(created[0]).toMatchObject({ project: 3, dataset_version: 5, base_model: "smollm2-135m-instruct", method: "full", config: { preset: "balanced", batch_size: 0, lr_schedule: "linear" } });
    expect(Object.keys((created[0] as { config: object }).config).sort()).toEqual(["batch_size", "lr_schedule", "preset"]);
    const batchSize = screen.getByLabelText("Batch size");
    expect(batchSize).toHaveAttribute("aria-invalid", "true");
    expect(batchSize.closest(".field")).toHaveTextContent("batch_size must be at least 1, not 0");
  });
});
