import { createBrowserRouter, Navigate } from "react-router";
import { LoginPage } from "../features/auth/components/LoginPage";
import { ProjectOverviewPage } from "../features/projects/components/ProjectOverviewPage";
import { ProjectsPage } from "../features/projects/components/ProjectsPage";
import { SettingsPage } from "../features/settings/components/SettingsPage";
import { NotFoundPage } from "./NotFoundPage";
import { RequireAuth } from "./RequireAuth";
import { RouteError } from "./RouteError";

export const routes = [
  { path: "/login", element: <LoginPage />, errorElement: <RouteError /> },
  {
    path: "/",
    element: <RequireAuth />,
    errorElement: <RouteError />,
    children: [
      { index: true, element: <Navigate to="/projects" replace /> },
      { path: "projects", element: <ProjectsPage /> },
      { path: "projects/:projectId", element: <ProjectOverviewPage /> },
      { path: "settings", element: <SettingsPage /> },
      { path: "*", element: <NotFoundPage /> },
    ],
  },
];

export function createRouter() {
  return createBrowserRouter(routes);
}
