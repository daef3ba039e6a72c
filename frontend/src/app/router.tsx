import type { ComponentType } from "react";
import { createBrowserRouter, Navigate, type LazyRouteFunction, type RouteObject } from "react-router";
import { LoadingState } from "../components/States";
import { NotFoundPage } from "./NotFoundPage";
import { RequireAuth } from "./RequireAuth";
import { RouteError } from "./RouteError";

/**
 * A page whose code is fetched on its first visit: signing in downloads the shell and one page, not
 * every page and chart library. The router waits for the code before it leaves the current page;
 * on the first load, hydrateFallbackElement shows while it arrives.
 */
export function page<M extends Record<K, ComponentType>, K extends keyof M>(load: () => Promise<M>, name: K): LazyRouteFunction<RouteObject> {
  return async () => {
    let module: M;
    try {
      module = await load();
    } catch (cause) {
      // Each browser words a failed dynamic import its own way; the likely cause is a new
      // deployment that replaced the chunks this tab was built against.
      throw new Error("This page's code could not be fetched: the dashboard may have been updated since this tab opened, or the server is unreachable. Reload the page.", { cause });
    }
    return { Component: module[name] };
  };
}

export const routes: RouteObject[] = [
  {
    path: "/login",
    lazy: page(() => import("../features/auth/components/LoginPage"), "LoginPage"),
    errorElement: <RouteError />,
    hydrateFallbackElement: <LoadingState />,
  },
  {
    path: "/",
    element: <RequireAuth />,
    errorElement: <RouteError />,
    hydrateFallbackElement: <LoadingState />,
    children: [
      { index: true, element: <Navigate to="/projects" replace /> },
      { path: "projects", lazy: page(() => import("../features/projects/components/ProjectsPage"), "ProjectsPage") },
      { path: "projects/:projectId", lazy: page(() => import("../features/projects/components/ProjectOverviewPage"), "ProjectOverviewPage") },
      { path: "projects/:projectId/datasets", lazy: page(() => import("../features/datasets/components/DatasetsPage"), "DatasetsPage") },
      { path: "projects/:projectId/datasets/:datasetId", lazy: page(() => import("../features/datasets/components/DatasetPage"), "DatasetPage") },
      { path: "projects/:projectId/datasets/:datasetId/versions/:versionId", lazy: page(() => import("../features/datasets/components/VersionPage"), "VersionPage") },
      { path: "projects/:projectId/runs", lazy: page(() => import("../features/training/components/RunsPage"), "RunsPage") },
      { path: "projects/:projectId/runs/new", lazy: page(() => import("../features/training/components/NewRunPage"), "NewRunPage") },
      { path: "projects/:projectId/runs/compare", lazy: page(() => import("../features/training/components/ComparePage"), "ComparePage") },
      { path: "projects/:projectId/runs/:runId", lazy: page(() => import("../features/training/components/RunPage"), "RunPage") },
      { path: "projects/:projectId/evals", lazy: page(() => import("../features/evals/components/EvalsPage"), "EvalsPage") },
      { path: "projects/:projectId/evals/:evaluationId", lazy: page(() => import("../features/evals/components/EvaluationPage"), "EvaluationPage") },
      { path: "projects/:projectId/services", lazy: page(() => import("../features/services/components/ServicesPage"), "ServicesPage") },
      { path: "playground", lazy: page(() => import("../features/playground/components/PlaygroundPage"), "PlaygroundPage") },
      { path: "logs", lazy: page(() => import("../features/logs/components/LogsPage"), "LogsPage") },
      { path: "settings", lazy: page(() => import("../features/settings/components/SettingsPage"), "SettingsPage") },
      { path: "*", element: <NotFoundPage /> },
    ],
  },
];

export function createRouter() {
  return createBrowserRouter(routes);
}
