import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { createMemoryRouter, RouterProvider } from "react-router";
import type { ChatMessage } from "../../../api/types";
import { promptAndAnswer, SaveToEvalSet } from "./SaveToEvalSet";

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const conversation: ChatMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Capital of Zorbland?" },
  { role: "assistant", content: "Quillport." },
];

type Call = { url: string; method: string; body: unknown };

function renderWith(handler: (call: Call) => Response) {
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
  const router = createMemoryRouter([{ path: "/", element: <SaveToEvalSet projectId={3} deploymentId={5} conversation={conversation} disabled={false} /> }]);
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <RouterProvider router={router} />
    </QueryClientProvider>,
  );
  return calls;
}

const version = (number: number, rows: number) => ({ id: 40 + number, eval_set: 7, number, row_count: rows, source_kind: "playground", source: {}, sha256: "x", tags: [], created_by: 1, created_at: "" });

describe("SaveToEvalSet", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("takes the conversation up to the last user message and the answer after it", () => {
    expect(promptAndAnswer(conversation)).toEqual({ prompt: conversation.slice(0, 2), answer: "Quillport." });
    expect(promptAndAnswer(conversation.slice(0, 2)).answer).toBe("");
    expect(promptAndAnswer([]).prompt).toEqual([]);
  });

  it("adds the prompt, the edited answer as reference and the key facts to an existing set as its next version", async () => {
    const calls = renderWith(({ url, method }) => {
      if (url.startsWith("/api/v1/eval-sets/") && method === "GET") return json({ count: 1, next: null, previous: null, results: [{ id: 7, project: 3, name: "facts", latest_version: 41 }] });
      return json(version(2, 4), 201);
    });
    await userEvent.click(screen.getByRole("button", { name: "Save to eval set" }));
    expect(await screen.findByRole("option", { name: "facts" })).toBeInTheDocument();
    const reference = screen.getByLabelText("Reference answer");
    expect(reference).toHaveValue("Quillport.");
    await userEvent.type(reference, " In Zorbland.");
    await userEvent.type(screen.getByLabelText("Must include"), "Quillport");
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Saved: facts version 2 now holds 4 rows.");
    const post = calls.find((c) => c.method === "POST")!;
    expect(post.url).toBe("/api/v1/eval-sets/7/versions/");
    expect(post.body).toEqual({
      playground: { messages: conversation.slice(0, 2), reference: "Quillport. In Zorbland.", deployment: 5, must_include: ["Quillport"] },
    });
  });

  it("creates a new set holding the prompt alone when the answer is not kept, and shows the server's reason beside the name", async () => {
    let refuseName = true;
    const calls = renderWith(({ url, method }) => {
      if (method === "GET") return json({ count: 0, next: null, previous: null, results: [] });
      if (url === "/api/v1/eval-sets/") {
        if (refuseName) return json({ error: { code: "invalid", message: "name: taken", fields: { name: ["The project already has an eval set named chats."] } } }, 400);
        return json({ id: 9, project: 3, name: "chats", latest_version: null }, 201);
      }
      return json(version(1, 1), 201);
    });
    await userEvent.click(screen.getByRole("button", { name: "Save to eval set" }));
    await userEvent.click(screen.getByLabelText("Keep the answer as the reference"));
    expect(screen.queryByLabelText("Reference answer")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Save" })).toBeDisabled();
    await userEvent.type(screen.getByLabelText("Name of the new set"), "chats");
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(await screen.findByText("The project already has an eval set named chats.")).toBeInTheDocument();
    refuseName = false;
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Saved: chats version 1 now holds 1 rows.");
    expect(calls.filter((c) => c.method === "POST").map((c) => [c.url, c.body])).toEqual([
      ["/api/v1/eval-sets/", { project: 3, name: "chats" }],
      ["/api/v1/eval-sets/", { project: 3, name: "chats" }],
      ["/api/v1/eval-sets/9/versions/", { playground: { messages: conversation.slice(0, 2), reference: null, deployment: 5 } }],
    ]);
  });
});
