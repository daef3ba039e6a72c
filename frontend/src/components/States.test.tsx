import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { ApiError } from "../api/client";
import { QueryState } from "./States";

function List({ load }: { load: () => Promise<string[]> }) {
  const query = useQuery({ queryKey: ["items"], queryFn: load, retry: false });
  return (
    <QueryState query={query} isEmpty={(d) => d.length === 0} empty={<p>Nothing yet</p>}>
      {(items) => <ul>{items.map((i) => <li key={i}>{i}</li>)}</ul>}
    </QueryState>
  );
}

function renderWithClient(ui: React.ReactElement) {
  return render(<QueryClientProvider client={new QueryClient()}>{ui}</QueryClientProvider>);
}

describe("QueryState", () => {
  it("shows loading, then the data", async () => {
    renderWithClient(<List load={async () => ["a", "b"]} />);
    expect(screen.getByText("Loading…")).toBeInTheDocument();
    expect(await screen.findAllByRole("listitem")).toHaveLength(2);
  });

  it("shows the empty state for an empty list", async () => {
    renderWithClient(<List load={async () => []} />);
    expect(await screen.findByText("Nothing yet")).toBeInTheDocument();
  });

  it("shows the API's message and retries on request", async () => {
    let calls = 0;
    const load = async () => {
      calls += 1;
      if (calls === 1) throw new ApiError(503, "unavailable", "The database is restarting.");
      return ["back"];
    };
    renderWithClient(<List load={load} />);
    expect(await screen.findByRole("alert")).toHaveTextContent("The database is restarting.");
    await userEvent.click(screen.getByRole("button", { name: "Try again" }));
    expect(await screen.findByText("back")).toBeInTheDocument();
  });
});
