import { useSearchParams } from "react-router";
import { PageHeader } from "../../../components/Card";
import { Tabs } from "../../../components/Tabs";
import { AuditPanel } from "./AuditPanel";
import { MembersPanel } from "./MembersPanel";
import { TokensPanel } from "./TokensPanel";
import { TrackingPanel } from "./TrackingPanel";

const TABS = [
  { id: "tokens", label: "API tokens" },
  { id: "members", label: "Members" },
  { id: "tracking", label: "Experiment tracking" },
  { id: "audit", label: "Audit log" },
];

export function SettingsPage() {
  const [params, setParams] = useSearchParams();
  const tab = TABS.some((t) => t.id === params.get("tab")) ? (params.get("tab") as string) : "tokens";
  return (
    <>
      <PageHeader title="Settings" description="API tokens for scripts, the team's members and roles, its MLflow and W&B, and who did what." />
      <Tabs label="Settings sections" tabs={TABS} selected={tab} onSelect={(id) => setParams({ tab: id })} />
      <div role="tabpanel" aria-label={TABS.find((t) => t.id === tab)?.label}>
        {tab === "tokens" ? <TokensPanel /> : tab === "members" ? <MembersPanel /> : tab === "tracking" ? <TrackingPanel /> : <AuditPanel />}
      </div>
    </>
  );
}
