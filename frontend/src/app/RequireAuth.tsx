import { Navigate, useLocation } from "react-router";
import { ErrorState, LoadingState } from "../components/States";
import { useMe } from "../features/auth/api/get-me";
import { CurrentTeamProvider } from "../lib/current-team";
import { AppShell } from "./AppShell";

/** Signed-in area: the shell with the current team, or a redirect to the sign-in page. */
export function RequireAuth() {
  const me = useMe();
  const location = useLocation();
  if (me.isPending) return <LoadingState label="Loading TinyForge…" />;
  if (me.isError) return <ErrorState error={me.error} onRetry={() => void me.refetch()} title="Cannot reach TinyForge" />;
  if (!me.data) {
    const next = `${location.pathname}${location.search}`;
    return <Navigate to={`/login?next=${encodeURIComponent(next)}`} replace />;
  }
  return (
    <CurrentTeamProvider me={me.data}>
      <AppShell me={me.data} />
    </CurrentTeamProvider>
  );
}
