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
});
