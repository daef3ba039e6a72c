import { isRouteErrorResponse, Link, useRouteError } from "react-router";

/** Last line of defence: a render error shows what happened instead of a blank page. */
export function RouteError() {
  const error = useRouteError();
  const message = isRouteErrorResponse(error)
    ? `${error.status} ${error.statusText}`
    : error instanceof Error
      ? error.message
      : "Unknown error";
  return (
    <main className="login-page">
      <div className="card card-body state" role="alert">
        <span className="state-title">This page crashed</span>
        <code>{message}</code>
        <span>
          <a href={window.location.href}>Reload</a> or go <Link to="/projects">back to projects</Link>.
        </span>
      </div>
    </main>
  );
}
