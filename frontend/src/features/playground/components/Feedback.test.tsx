import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { ReactElement } from "react";
import { createMemoryRouter, RouterProvider } from "react-router";
import type { Deployment } from "../../../api/types";
import { AnswerFeedback } from "./AnswerFeedback";
import { CompareAnswers } from "./CompareAnswers";
import { FeedbackToDataset } from "./FeedbackToDataset";

type Call = { url: string; method: string; body: unknown };

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** What the Playground API streams: OpenAI chunks carrying the completion's id, then [DONE]. */
function stream(id: string, pieces: string[]) {
  const events = pieces.map((text) => `data: ${JSON.stringify({ id, object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: text } }] })}\n\n`);
  return new Response(events.join("") + "data: [DONE]\n\n", { headers: { "Content-Type": "text/event-stream" } });
}

function renderWith(element: ReactElement, handler: (call: Call) => Response) {
  document.cookie = "csrftoken=t; path=/";
  const calls: Call[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init?: RequestInit) => {
      const call = { url, method: init?.method ?? "GET", body: init?.body ? JSON.parse(String(init.body)) : null };
      calls.push(call);
      return handler(call);
    }),
  );
  const router = createMemoryRouter([{ path: "/", element }]);
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <RouterProvider router={router} />
    </QueryClientProvider>,
  );
  return calls;
}

const feedback = (fields: object) => json({ id: 1, kind: "rating", ...fields }, 201);
const posts = (calls: Call[]) => calls.filter((c) => c.method === "POST").map((c) => [c.url, c.body]);

describe("feedback in the Playground", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("rates an answer up or down and saves a correction by its completion id", async () => {
    const calls = renderWith(<AnswerFeedback completionId="chatcmpl-1" answer="Zorbland is a planet." />, () => feedback({}));
    await userEvent.click(screen.getByRole("button", { name: "Bad answer" }));
    await waitFor(() => expect(screen.getByRole("button", { name: "Bad answer" })).toHaveAttribute("aria-pressed", "true"));
    await userEvent.click(screen.getByRole("button", { name: "Edit" }));
    const box = screen.getByLabelText("What it should have said");
    expect(box).toHaveValue("Zorbland is a planet.");
    expect(screen.getByRole("button", { name: "Save correction" })).toBeDisabled(); // unchanged: nothing to learn
    await userEvent.clear(box);
    await userEvent.type(box, "Quillport is the capital.");
    await userEvent.click(screen.getByRole("button", { name: "Save correction" }));
    expect(await screen.findByText("Correction saved.")).toBeInTheDocument();
    expect(posts(calls)).toEqual([
      ["/api/v1/feedback/", { completion: "chatcmpl-1", rating: "down" }],
      ["/api/v1/feedback/", { completion: "chatcmpl-1", correction: "Quillport is the capital." }],
    ]);
  });

  it("shows the server's reason beside the correction", async () => {
    renderWith(<AnswerFeedback completionId="chatcmpl-1" answer="A" />, () =>
      json({ error: { code: "invalid", message: "correction: blank", fields: { correction: ["The correction is blank."] } } }, 400));
    await userEvent.click(screen.getByRole("button", { name: "Edit" }));
    await userEvent.type(screen.getByLabelText("What it should have said"), "B");
    await userEvent.click(screen.getByRole("button", { name: "Save correction" }));
    expect(await screen.findByText("The correction is blank.")).toBeInTheDocument();
    expect(screen.queryByText("Correction saved.")).not.toBeInTheDocument();
  });

  it("asks two deployments the same prompt side by side and records the pick between their ids", async () => {
    const deployments = [{ id: 5, name: "zorb-v1", project: 3 }, { id: 6, name: "zorb-v2", project: 3 }] as Deployment[];
    const calls = renderWith(<CompareAnswers deployments={deployments} system="Be brief." temperature={0.7} maxTokens={32} />, ({ url }) => {
      if (url === "/api/v1/deployments/5/chat/") return stream("chatcmpl-left", ["Zorbland ", "is a planet."]);
      if (url === "/api/v1/deployments/6/chat/") return stream("chatcmpl-right", ["Quillport."]);
      return feedback({ kind: "choice" });
    });
    expect(screen.getByLabelText("Right")).toHaveValue("6");
    await userEvent.type(screen.getByLabelText("Prompt"), "Capital of Zorbland?");
    await userEvent.click(screen.getByRole("button", { name: "Ask both" }));
    const left = await screen.findByRole("region", { name: "Left answer" });
    const right = screen.getByRole("region", { name: "Right answer" });
    expect(await within(left).findByText("Zorbland is a planet.")).toBeInTheDocument();
    expect(within(right).getByText("Quillport.")).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Right is better" }));
    expect(await screen.findByText("1 compared so far")).toBeInTheDocument();
    const chats = calls.filter((c) => c.url.endsWith("/chat/")).map((c) => c.body);
    expect(chats).toEqual([5, 6].map(() => ({ messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Capital of Zorbland?" }],
      temperature: 0.7, max_tokens: 32, stream: true })));
    expect(posts(calls).filter(([url]) => url === "/api/v1/feedback/")).toEqual([
      ["/api/v1/feedback/", { completion: "chatcmpl-left", compared_with: "chatcmpl-right", preferred: "chatcmpl-right" }],
    ]);
  });

  it("makes a dataset version of the chosen kind from the deployment's feedback", async () => {
    const calls = renderWith(<FeedbackToDataset projectId={3} deploymentId={5} />, ({ url }) => {
      if (url.startsWith("/api/v1/feedback/summary/")) return json({ feedback: 4, rows: { pairs: 2, unpaired: 3, supervised: 0 } });
      if (url.startsWith("/api/v1/datasets/")) return json({ count: 1, next: null, previous: null, results: [{ id: 8, name: "faq", project: 3 }] });
      return json({ id: 19, dataset: 8, number: 2, status: "pending", source_kind: "feedback" }, 201);
    });
    expect(await screen.findByText("4 pieces of feedback on this deployment's answers")).toBeInTheDocument();
    await screen.findByRole("option", { name: "faq" });
    await userEvent.selectOptions(screen.getByLabelText("Rows"), "supervised");
    expect(screen.getByRole("button", { name: "Make dataset version" })).toBeDisabled(); // no corrections yet
    await userEvent.selectOptions(screen.getByLabelText("Rows"), "unpaired");
    await userEvent.click(screen.getByRole("button", { name: "Make dataset version" }));
    expect(await screen.findByText(/Version 2 is importing/)).toBeInTheDocument();
    expect(posts(calls)).toEqual([["/api/v1/feedback/dataset-version/", { dataset: 8, kind: "unpaired", deployment: 5 }]]);
  });
});
