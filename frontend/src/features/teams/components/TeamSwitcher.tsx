import { useQueryClient } from "@tanstack/react-query";
import { useNavigate } from "react-router";
import { useCurrentTeam } from "../../../lib/current-team";

export function TeamSwitcher() {
  const { team, teams, setTeamId } = useCurrentTeam();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  if (teams.length < 2) {
    return (
      <span className="badge badge-accent" title={`Your role: ${team.role}`}>
        {team.name} · {team.role}
      </span>
    );
  }
  return (
    <label className="row small">
      <span className="visually-hidden">Team</span>
      <select
        className="select"
        style={{ width: "auto", minHeight: 30 }}
        value={team.id}
        onChange={(event) => {
          setTeamId(Number(event.target.value));
          // Another team's projects differ: drop cached lists and go back to the start page.
          void queryClient.invalidateQueries();
          void navigate("/projects");
        }}
      >
        {teams.map((t) => (
          <option key={t.id} value={t.id}>
            {t.name} ({t.role})
          </option>
        ))}
      </select>
    </label>
  );
}
