import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { createMemoryRouter, RouterProvider } from "react-router";
import { LoginPage } from "./LoginPage";

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function renderLogin() {
  const router = createMemoryRouter(
    [
      { path: "/login", element: <LoginPage /> },
      { path: "/projects", element: <p>Projects page</p> },
    ],
    { initialEntries: ["/login"] },
  );
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <RouterProvider router={router} />
    </QueryClientProvider>,
  );
}

describe("LoginPage", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("shows a failed sign-in beside the button and signs in on the second try", async () => {
    document.cookie = "csrftoken=t; path=/";
    let signedIn = false;
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init?: RequestInit) => {
        if (url === "/api/v1/auth/me/") {
          return signedIn ? json(200, { id: 1, username: "alice", email: "", is_staff: false, teams: [] }) : json(403, { error: { code: "not_authenticated", message: "Sign in.", fields: {} } });
        }
        const body = JSON.parse(String(init?.body)) as { password: string };
        if (body.password !== "right") return json(400, { error: { code: "invalid_credentials", message: "Wrong user name, e-mail or password.", fields: {} } });
        signedIn = true;
        return json(200, {});
      }),
    );
    renderLogin();
    await userEvent.type(await screen.findByLabelText("Username or e-mail"), "alice");
    await userEvent.type(screen.getByLabelText("Password"), "wrong");
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Wrong user name, e-mail or password.");

    await userEvent.clear(screen.getByLabelText("Password"));
    await userEvent.type(screen.getByLabelText("Password"), "right");
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByText("Projects page")).toBeInTheDocument();
  });
});
