import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { Me } from "../../../api/types";
import { CurrentTeamProvider } from "../../../lib/current-team";
import { TrackingPanel } from "./TrackingPanel";

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const saved = {
  team: 7, mlflow_tracking_uri: "", mlflow_experiment: "", mlflow_username: "", wandb_project: "", wandb_entity: "",
  wandb_base_url: "", log_model: false, has_mlflow_password: true, has_mlflow_token: false, has_wandb_api_key: false,
  server_mlflow: "http://mlflow.internal:5000", server_wandb: false, updated_at: "2026-12-06T10:00:00Z",
};

function renderPanel(role: "owner" | "member") {
  const me = { id: 1, username: "alice", email: "", is_staff: false, teams: [{ id: 7, name: "Acme", slug: "acme", role }] } as Me;
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <CurrentTeamProvider me={me}>
        <TrackingPanel />
      </CurrentTeamProvider>
    </QueryClientProvider>,
  );
}

describe("TrackingPanel", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("saves an owner's MLflow URI without sending the saved password again, and shows the API's reason", async () => {
    document.cookie = "csrftoken=test-token; path=/";
    const sent: { method: string; body: unknown }[] = [];
    vi.stubGlobal("fetch", vi.fn(async (_url: string, init?: RequestInit) => {
      if (init?.method === "PUT") {
        const body = JSON.parse(String(init.body));
        sent.push({ method: "PUT", body });
        if (String(body.mlflow_tracking_uri).startsWith("file:")) {
          return json(400, { error: { code: "invalid", message: "Invalid input.", fields: { mlflow_tracking_uri: ["not an http:// or https:// URL"] } } });
        }
        return json(200, { ...saved, ...body });
      }
      return json(200, saved);
    }));
    renderPanel("owner");
    expect(await screen.findByText(/Server-wide MLflow: http:\/\/mlflow.internal:5000/)).toBeInTheDocument();
    expect(screen.getByLabelText("MLflow password")).toHaveAccessibleDescription("Saved; type a new one to replace it.");
    const uri = screen.getByLabelText("MLflow tracking URI");
    await userEvent.type(uri, "file:///data/mlruns");
    await userEvent.click(screen.getByRole("button", { name: "Save tracking settings" }));
    expect(await screen.findByText("not an http:// or https:// URL")).toBeInTheDocument();
    await userEvent.clear(uri);
    await userEvent.type(uri, "https://mlflow.example.com");
    await userEvent.click(screen.getByRole("button", { name: "Save tracking settings" }));
    expect(await screen.findByText("Saved.")).toBeInTheDocument();
    expect(sent[1]?.body).toMatchObject({ mlflow_tracking_uri: "https://mlflow.example.com", log_model: false });
    expect(sent[1]?.body).not.toHaveProperty("mlflow_password");
  });

  it("shows a member the settings read-only", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => json(200, { ...saved, mlflow_tracking_uri: "https://mlflow.example.com" })));
    renderPanel("member");
    expect(await screen.findByDisplayValue("https://mlflow.example.com")).toBeDisabled();
    expect(screen.queryByRole("button", { name: "Save tracking settings" })).not.toBeInTheDocument();
    expect(screen.getByText("Only the team's owners change these.")).toBeInTheDocument();
  });
});
