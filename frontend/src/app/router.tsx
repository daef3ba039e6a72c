import { createBrowserRouter, Navigate } from "react-router";
import { DatasetPage } from "../features/datasets/components/DatasetPage";
import { DatasetsPage } from "../features/datasets/components/DatasetsPage";
import { VersionPage } from "../features/datasets/components/VersionPage";
import { ComparePage } from "../features/training/components/ComparePage";
import { NewRunPage } from "../features/training/components/NewRunPage";
import { RunPage } from "../features/training/components/RunPage";
import { RunsPage } from "../features/training/components/RunsPage";
import { LogsPage } from "../features/logs/components/LogsPage";
import { PlaygroundPage } from "../features/playground/components/PlaygroundPage";
import { ServicesPage } from "../features/services/components/ServicesPage";
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
      { path: "projects/:projectId/datasets", element: <DatasetsPage /> },
      { path: "projects/:projectId/datasets/:datasetId", element: <DatasetPage /> },
      { path: "projects/:projectId/datasets/:datasetId/versions/:versionId", element: <VersionPage /> },
      { path: "projects/:projectId/runs", element: <RunsPage /> },
      { path: "projects/:projectId/runs/new", element: <NewRunPage /> },
      { path: "projects/:projectId/runs/compare", element: <ComparePage /> },
      { path: "projects/:projectId/runs/:runId", element: <RunPage /> },
      { path: "projects/:projectId/services", element: <ServicesPage /> },
      { path: "playground", element: <PlaygroundPage /> },
      { path: "logs", element: <LogsPage /> },
      { path: "settings", element: <SettingsPage /> },
      { path: "*", element: <NotFoundPage /> },
    ],
  },
];

export function createRouter() {
  return createBrowserRouter(routes);
}
