import { render, screen } from "@testing-library/react";
import { createMemoryRouter, RouterProvider } from "react-router";
import { page } from "./router";
import { RouteError } from "./RouteError";

function Greeting() {
  return <h1>Hello</h1>;
}

function renderAt(load: () => Promise<{ Greeting: typeof Greeting }>) {
  const router = createMemoryRouter([{ path: "/", lazy: page(load, "Greeting"), errorElement: <RouteError />, hydrateFallbackElement: <p>Loading</p> }]);
  return render(<RouterProvider router={router} />);
}

describe("lazily loaded pages", () => {
  it("renders the page once its code has arrived", async () => {
    renderAt(async () => ({ Greeting }));
    expect(await screen.findByRole("heading", { name: "Hello" })).toBeInTheDocument();
  });

  it("asks for a reload when the page's code cannot be fetched", async () => {
    renderAt(() => Promise.reject(new TypeError("Failed to fetch dynamically imported module: /assets/Greeting-1a2b3c.js")));
    expect(await screen.findByRole("alert")).toHaveTextContent("the dashboard may have been updated since this tab opened");
    expect(screen.getByRole("link", { name: "Reload" })).toBeInTheDocument();
  });
});
