import { createContext, useContext, useMemo, useState, type ReactNode } from "react";
import type { Me, Role, TeamRef } from "../api/types";

const STORAGE_KEY = "tinyforge.team";

export interface CurrentTeam {
  team: TeamRef;
  teams: TeamRef[];
  role: Role;
  /** Members and above create, start and delete things; viewers only look. */
  canWrite: boolean;
  /** Owners and admins manage members. */
  canManage: boolean;
  setTeamId: (id: number) => void;
}

const CurrentTeamContext = createContext<CurrentTeam | null>(null);

function storedTeamId(): number | null {
  const raw = window.localStorage.getItem(STORAGE_KEY);
  const id = raw ? Number(raw) : NaN;
  return Number.isInteger(id) ? id : null;
}

export function CurrentTeamProvider({ me, children }: { me: Me; children: ReactNode }) {
  const [teamId, setTeamIdState] = useState<number | null>(storedTeamId);
  const value = useMemo<CurrentTeam | null>(() => {
    const team = me.teams.find((t) => t.id === teamId) ?? me.teams[0];
    if (!team) return null;
    return {
      team,
      teams: me.teams,
      role: team.role,
      canWrite: team.role !== "viewer",
      canManage: team.role === "owner" || team.role === "admin",
      setTeamId: (id: number) => {
        window.localStorage.setItem(STORAGE_KEY, String(id));
        setTeamIdState(id);
      },
    };
  }, [me.teams, teamId]);
  if (!value) {
    return (
      <div className="login-page">
        <div className="card card-body login-card state">
          <span className="state-title">You are not in any team yet</span>
          <span>Ask a team owner or admin to add you, or open the invite link they sent.</span>
        </div>
      </div>
    );
  }
  return <CurrentTeamContext.Provider value={value}>{children}</CurrentTeamContext.Provider>;
}

export function useCurrentTeam(): CurrentTeam {
  const value = useContext(CurrentTeamContext);
  if (!value) throw new Error("useCurrentTeam outside CurrentTeamProvider");
  return value;
}

/** For tests and stories: a fixed team without a signed-in user. */
export function CurrentTeamContextProvider({ value, children }: { value: CurrentTeam; children: ReactNode }) {
  return <CurrentTeamContext.Provider value={value}>{children}</CurrentTeamContext.Provider>;
}
