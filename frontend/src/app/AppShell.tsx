import { NavLink, Outlet, useMatch, useNavigate } from "react-router";
import { Button } from "../components/Button";
import { InlineError } from "../components/States";
import { useLogout } from "../features/auth/api/logout";
import type { Me } from "../api/types";
import { useProject } from "../api/get-project";
import { TeamSwitcher } from "../features/teams/components/TeamSwitcher";
import { useTheme, type ThemeChoice } from "../lib/theme";
import { useLastProject } from "../lib/last-project";

function navClass({ isActive }: { isActive: boolean }) {
  return `nav-link${isActive ? " active" : ""}`;
}

function ProjectNav() {
  const match = useMatch("/projects/:projectId/*");
  const fromUrl = match?.params.projectId ? Number(match.params.projectId) : null;
  const lastProject = useLastProject(fromUrl);
  const projectId = fromUrl ?? lastProject;
  const project = useProject(projectId);
  if (projectId === null) return null;
  const base = `/projects/${projectId}`;
  return (
    <>
      <div className="nav-section">Project</div>
      <div className="nav-project" title={project.data?.name}>
        {project.data?.name ?? (project.isError ? "Unavailable" : "…")}
      </div>
      <NavLink className={navClass} to={base} end>
        Overview
      </NavLink>
      <NavLink className={navClass} to={`${base}/datasets`}>
        Datasets
      </NavLink>
      <NavLink className={navClass} to={`${base}/runs`}>
        Train
      </NavLink>
      <NavLink className={navClass} to={`${base}/evals`}>
        Evaluate
      </NavLink>
      <NavLink className={navClass} to={`${base}/services`}>
        Services
      </NavLink>
    </>
  );
}

function ThemeSelect() {
  const [theme, setTheme] = useTheme();
  return (
    <label className="row small">
      <span className="visually-hidden">Colour theme</span>
      <select className="select" style={{ width: "auto", minHeight: 30 }} value={theme} onChange={(e) => setTheme(e.target.value as ThemeChoice)}>
        <option value="system">System theme</option>
        <option value="light">Light</option>
        <option value="dark">Dark</option>
      </select>
    </label>
  );
}

export function AppShell({ me }: { me: Me }) {
  const logout = useLogout();
  const navigate = useNavigate();
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="app-header">
        <NavLink to="/projects" className="brand">
          <span className="brand-mark" aria-hidden="true">
            T
          </span>
          TinyForge
        </NavLink>
        <TeamSwitcher />
        <div className="header-spacer" />
        <ThemeSelect />
        <div className="header-user">
          <span title={me.email} data-testid="current-user">
            Signed in as <strong style={{ color: "var(--text)" }}>{me.username}</strong>
          </span>
          <Button
            size="sm"
            busy={logout.isPending}
            onClick={() => logout.mutate(undefined, { onSuccess: () => void navigate("/login", { replace: true }) })}
          >
            Sign out
          </Button>
        </div>
      </header>
      <nav className="app-nav" aria-label="Main">
        <NavLink className={navClass} to="/projects" end>
          Projects
        </NavLink>
        <ProjectNav />
        <div className="nav-section">Team</div>
        <NavLink className={navClass} to="/playground">
          Playground
        </NavLink>
        <NavLink className={navClass} to="/logs">
          Logs
        </NavLink>
        <NavLink className={navClass} to="/settings">
          Settings
        </NavLink>
      </nav>
      <main id="main" className="app-main" tabIndex={-1}>
        {logout.error ? <InlineError error={logout.error} /> : null}
        <Outlet />
      </main>
    </div>
  );
}
