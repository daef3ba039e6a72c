import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { createMemoryRouter, RouterProvider } from "react-router";
import { UploadPanel } from "./UploadPanel";

/** The options each upload sent (uploads go through XMLHttpRequest for their progress events). */
function recordUploads(): Record<string, unknown>[] {
  const sent: Record<string, unknown>[] = [];
  class RecordingXhr {
    upload = {};
    status = 201;
    statusText = "Created";
    responseText = JSON.stringify({ id: 9 });
    withCredentials = false;
    onload: (() => void) | null = null;
    open() {}
    setRequestHeader() {}
    send(form: FormData) {
      sent.push(JSON.parse(String(form.get("options"))) as Record<string, unknown>);
      this.onload?.();
    }
  }
  vi.stubGlobal("XMLHttpRequest", RecordingXhr);
  return sent;
}

/** The servers an administrator allowed (the platform's own first) and one deployment of the team. */
function stubTeachers(deployment: string) {
  const info = {
    teachers: ["http://inference:8001/v1", "http://vllm:8000/v1"],
    own_inference_url: "http://inference:8001/v1",
    prompts: { facts: "List facts.", questions: "Write questions.", answers: "Answer.", restatements: "Rewrite." },
    defaults: { facts_per_chunk: 8, questions_per_fact: 4, restatements_per_chunk: 0, gap_fills: true, temperature: 0.7, concurrency: 4 },
  };
  vi.stubGlobal("fetch", vi.fn(async (url: string) => {
    const body = String(url).includes("knowledge-options") ? info : { count: 1, next: null, previous: null, results: [{ id: 5, name: deployment }] };
    return new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });
  }));
}

function renderPanel() {
  const router = createMemoryRouter(
    [
      { path: "/datasets/2", element: <UploadPanel datasetId={2} /> },
      { path: "/datasets/2/versions/:id", element: <p>version page</p> },
    ],
    { initialEntries: ["/datasets/2"] },
  );
  render(
    <QueryClientProvider client={new QueryClient()}>
      <RouterProvider router={router} />
    </QueryClientProvider>,
  );
}

describe("UploadPanel", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("skips and lists bad rows unless asked to stop at the first one", async () => {
    document.cookie = "csrftoken=t; path=/";
    const sent = recordUploads();
    const user = userEvent.setup();
    const file = new File(['{"instruction": "a", "output": "b"}\n'], "rows.jsonl", { type: "application/jsonl" });

    renderPanel();
    await user.upload(screen.getByTestId("file-input"), file);
    await user.click(screen.getByRole("button", { name: /^Upload 1 file/ }));
    await screen.findByText("version page");

    cleanup();
    renderPanel();
    await user.upload(screen.getByTestId("file-input"), file);
    await user.click(screen.getByRole("checkbox", { name: /Stop at the first bad row/ }));
    await user.click(screen.getByRole("button", { name: /^Upload 1 file/ }));
    await waitFor(() => expect(sent).toHaveLength(2));

    expect(sent.map((options) => options.skip_bad_records)).toEqual([true, false]);
  });

  it("offers the knowledge recipe with its teacher and knobs, a dry run, then imports with those options", async () => {
    document.cookie = "csrftoken=t; path=/";
    stubTeachers("smol");
    const sent: { url: string; options: Record<string, unknown>; chunks: string | null }[] = [];
    const preview = {
      estimate: { chunks: 12, characters: 9000, teacher_calls: 36, teacher_tokens: 40000, training_rows_at_most: 384 },
      rows: [{ instruction: "How many leave days do staff get?", output: "Staff get 28 days of paid leave a year.", metadata: { fact: "Staff get 28 days of paid leave." } }],
      heldout: [{ input: "What is the yearly leave?", must_include: ["28"] }],
      stats: { facts: 1, rows_dropped: 1, teacher_tokens: 900, dropped: [{ text: "30 days", reason: "answer not in the chunk: the number 30 is not in the chunk" }] },
    };
    class Xhr {
      upload = {};
      status = 200;
      statusText = "OK";
      responseText = "";
      withCredentials = false;
      onload: (() => void) | null = null;
      url = "";
      open(_method: string, url: string) {
        this.url = url;
      }
      setRequestHeader() {}
      send(form: FormData) {
        sent.push({ url: this.url, options: JSON.parse(String(form.get("options"))) as Record<string, unknown>, chunks: form.get("chunks") as string | null });
        const isPreview = this.url.includes("knowledge-preview");
        this.status = isPreview ? 200 : 201;
        this.responseText = JSON.stringify(isPreview ? preview : { id: 9 });
        this.onload?.();
      }
    }
    vi.stubGlobal("XMLHttpRequest", Xhr);
    const user = userEvent.setup();
    renderPanel();
    await user.upload(screen.getByTestId("file-input"), new File(["# Leave\nStaff get 28 days."], "handbook.md"));
    await user.selectOptions(screen.getByLabelText("Documents become"), "knowledge");
    expect(await screen.findByText(/A larger teacher writes better data/)).toBeInTheDocument();
    expect(await screen.findByRole("option", { name: /This platform's deployments/ })).toBeInTheDocument();
    await user.type(screen.getByLabelText("Teacher model"), "smol");
    await user.type(screen.getByLabelText("Questions per fact"), "6");
    const gapFills = screen.getByRole("checkbox", { name: /Gap-fill rows/ });
    expect(gapFills).toBeChecked(); // the server's default
    await user.click(gapFills);
    await user.click(screen.getByText("Teacher prompts"));
    await user.clear(screen.getByLabelText("Answers prompt"));
    await user.type(screen.getByLabelText("Answers prompt"), "Answer in one sentence.");
    await user.click(screen.getByRole("button", { name: /Dry run on the first 3 chunks/ }));
    expect(await screen.findByText(/about 36 teacher calls and 40,000 tokens/)).toBeInTheDocument();
    expect(screen.getByText("How many leave days do staff get?")).toBeInTheDocument();
    expect(screen.getByText(/the number 30 is not in the chunk/)).toBeInTheDocument();
    expect(screen.getByText(/What is the yearly leave\?/)).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: /^Upload 1 file/ }));
    await screen.findByText("version page");

    const knowledge = { base_url: "http://inference:8001/v1", model: "smol", questions_per_fact: 6, gap_fills: false, prompts: { answers: "Answer in one sentence." } };
    expect(sent.map((s) => s.url)).toEqual(["/api/v1/datasets/2/knowledge-preview/", "/api/v1/datasets/2/upload/"]);
    expect(sent[0]).toMatchObject({ chunks: "3", options: { recipe: "knowledge", knowledge } });
    expect(sent[1]?.options).toMatchObject({ recipe: "knowledge", knowledge });
  });

  it("offers the qa recipe the same teacher picker, a deployment of the team by name, and shows the server's reason beside it", async () => {
    document.cookie = "csrftoken=t; path=/";
    stubTeachers("smol-teacher");
    const sent: Record<string, unknown>[] = [];
    class Xhr {
      upload = {};
      status = 400;
      statusText = "Bad Request";
      responseText = "";
      withCredentials = false;
      onload: (() => void) | null = null;
      open() {}
      setRequestHeader() {}
      send(form: FormData) {
        const options = JSON.parse(String(form.get("options"))) as { qa: { model: string } };
        sent.push(options);
        // The first upload names a model the server does not serve; the second one it takes.
        const refused = options.qa.model === "gpt-4o";
        this.status = refused ? 400 : 201;
        this.responseText = JSON.stringify(
          refused ? { error: { code: "invalid", message: "Invalid input.", fields: { "options.qa.model": ["No deployment gpt-4o here."] } } } : { id: 9 },
        );
        this.onload?.();
      }
    }
    vi.stubGlobal("XMLHttpRequest", Xhr);
    const user = userEvent.setup();
    renderPanel();
    await user.upload(screen.getByTestId("file-input"), new File(["# Leave\nStaff get 28 days."], "handbook.md"));
    await user.selectOptions(screen.getByLabelText("Documents become"), "qa");
    expect(await screen.findByText(/A larger teacher writes better pairs/)).toBeInTheDocument();
    expect(await screen.findByRole("option", { name: /This platform's deployments \(http:\/\/inference:8001\/v1\)/ })).toBeInTheDocument();
    expect(screen.getByText("A deployment of this team, by name")).toBeInTheDocument();
    await waitFor(() => expect(document.querySelector('#teacher-models option[value="smol-teacher"]')).not.toBeNull());
    expect(screen.queryByLabelText("Questions per fact")).not.toBeInTheDocument();

    await user.type(screen.getByLabelText("Teacher model"), "gpt-4o");
    await user.selectOptions(screen.getByLabelText("Teacher server"), "http://vllm:8000/v1");
    expect(screen.queryByText("A deployment of this team, by name")).not.toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: /^Upload 1 file/ }));
    expect(await screen.findByText("No deployment gpt-4o here.")).toBeInTheDocument();

    await user.selectOptions(screen.getByLabelText("Teacher server"), "http://inference:8001/v1");
    await user.clear(screen.getByLabelText("Teacher model"));
    await user.type(screen.getByLabelText("Teacher model"), "smol-teacher");
    await user.type(screen.getByLabelText("Questions per chunk"), "5");
    await user.click(screen.getByRole("button", { name: /^Upload 1 file/ }));
    await screen.findByText("version page");

    expect(sent).toEqual([
      { recipe: "qa", skip_bad_records: true, qa: { base_url: "http://vllm:8000/v1", model: "gpt-4o" } },
      { recipe: "qa", skip_bad_records: true, qa: { base_url: "http://inference:8001/v1", model: "smol-teacher", questions_per_chunk: 5 } },
    ]);
  });
});
