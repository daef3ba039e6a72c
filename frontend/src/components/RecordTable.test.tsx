import { QueryClient, QueryClientProvider, useMutation, useQuery } from "@tanstack/react-query";
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { ApiError } from "../api/client";
import { RecordTable } from "./RecordTable";

interface Item {
  id: number;
  name: string;
  locked: boolean;
}

function Items({ load, remove, confirmed = true }: { load: () => Promise<Item[]>; remove: (id: number) => Promise<void>; confirmed?: boolean }) {
  const items = useQuery({ queryKey: ["items"], queryFn: load, retry: false });
  const removal = useMutation({ mutationFn: remove });
  return (
    <RecordTable
      query={items}
      label="Items"
      columns={[{ header: "Name", cell: (i) => i.name }]}
      empty="No items"
      actions={(i) => <a href={`/items/${i.id}`}>Open</a>}
      remove={{
        mutation: removal,
        variables: (i) => i.id,
        label: "Delete",
        ariaLabel: (i) => `Delete ${i.name}`,
        confirm: confirmed ? (i) => `Delete ${i.name}?` : undefined,
        allowed: (i) => !i.locked,
      }}
    />
  );
}

function renderWithClient(ui: React.ReactElement) {
  return render(<QueryClientProvider client={new QueryClient()}>{ui}</QueryClientProvider>);
}

const ITEMS: Item[] = [
  { id: 1, name: "alpha", locked: false },
  { id: 2, name: "beta", locked: true },
];

describe("RecordTable", () => {
  afterEach(() => vi.restoreAllMocks());

  it("shows one row per record with its actions, and a removal only where allowed", async () => {
    renderWithClient(<Items load={async () => ITEMS} remove={async () => undefined} />);
    const table = await screen.findByRole("table", { name: "Items" });
    const rows = within(table).getAllByRole("row").slice(1);
    expect(rows.map((r) => within(r).getAllByRole("cell")[0]?.textContent)).toEqual(["alpha", "beta"]);
    expect(within(rows[0]!).getByRole("link", { name: "Open" })).toHaveAttribute("href", "/items/1");
    expect(within(rows[0]!).getByRole("button", { name: "Delete alpha" })).toBeEnabled();
    expect(within(rows[1]!).queryByRole("button")).toBeNull();
  });

  it("removes a row only once the user confirms", async () => {
    const removed: number[] = [];
    const confirm = vi.spyOn(window, "confirm").mockReturnValueOnce(false).mockReturnValueOnce(true);
    renderWithClient(<Items load={async () => ITEMS} remove={async (id) => void removed.push(id)} />);
    const button = await screen.findByRole("button", { name: "Delete alpha" });
    await userEvent.click(button);
    expect(confirm).toHaveBeenLastCalledWith("Delete alpha?");
    expect(removed).toEqual([]);
    await userEvent.click(button);
    await waitFor(() => expect(removed).toEqual([1]));
  });

  it("marks only the row being removed as busy", async () => {
    let finish: () => void = () => undefined;
    const pending = new Promise<void>((resolve) => (finish = resolve));
    renderWithClient(<Items load={async () => [ITEMS[0]!, { id: 3, name: "gamma", locked: false }]} remove={() => pending} confirmed={false} />);
    await userEvent.click(await screen.findByRole("button", { name: "Delete gamma" }));
    expect(screen.getByRole("button", { name: "Delete gamma" })).toHaveAttribute("aria-busy", "true");
    expect(screen.getByRole("button", { name: "Delete alpha" })).not.toHaveAttribute("aria-busy");
    finish();
    await waitFor(() => expect(screen.getByRole("button", { name: "Delete gamma" })).not.toHaveAttribute("aria-busy"));
  });

  it("shows why a removal failed beside the table", async () => {
    const refuse = async () => {
      throw new ApiError(409, "conflict", "The export is in use by a deployment.");
    };
    renderWithClient(<Items load={async () => ITEMS} remove={refuse} confirmed={false} />);
    await userEvent.click(await screen.findByRole("button", { name: "Delete alpha" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("The export is in use by a deployment.");
    expect(screen.getByRole("table", { name: "Items" })).toBeInTheDocument();
  });

  it("shows the empty state for an empty list", async () => {
    renderWithClient(<Items load={async () => []} remove={async () => undefined} />);
    expect(await screen.findByText("No items")).toBeInTheDocument();
    expect(screen.queryByRole("table")).toBeNull();
  });
});
