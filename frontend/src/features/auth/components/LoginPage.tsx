import { useState, type FormEvent } from "react";
import { Navigate, useNavigate, useSearchParams } from "react-router";
import { errorBesideButton, fieldError } from "../../../api/client";
import { Button } from "../../../components/Button";
import { Field } from "../../../components/Field";
import { InlineError, LoadingState } from "../../../components/States";
import { useMe } from "../api/get-me";
import { useLogin } from "../api/login";

export function LoginPage() {
  const me = useMe();
  const login = useLogin();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const next = params.get("next") ?? "/projects";
  const safeNext = next.startsWith("/") && !next.startsWith("//") ? next : "/projects";

  if (me.isPending) return <LoadingState label="Checking your session…" />;
  if (me.data) return <Navigate to={safeNext} replace />;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate(
      { username: username.trim(), password },
      { onSuccess: (user) => user && void navigate(safeNext, { replace: true }) },
    );
  };

  return (
    <main className="login-page">
      <form className="card login-card" onSubmit={submit} aria-labelledby="login-title" noValidate>
        <div className="card-body stack">
          <div className="brand">
            <span className="brand-mark" aria-hidden="true">
              T
            </span>
            TinyForge
          </div>
          <h1 id="login-title">Sign in</h1>
          <Field label="Username or e-mail" errors={fieldError(login.error, "username")}>
            <input
              className="input"
              name="username"
              autoComplete="username"
              autoFocus
              required
              value={username}
              onChange={(e) => setUsername(e.target.value)}
            />
          </Field>
          <Field label="Password" errors={fieldError(login.error, "password")}>
            <input
              className="input"
              name="password"
              type="password"
              autoComplete="current-password"
              required
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
          </Field>
          {/* A field-less error (wrong password, locked out) belongs beside the button. */}
          <InlineError error={errorBesideButton(login.error, ["username", "password"])} />
          <Button type="submit" variant="primary" busy={login.isPending} disabled={!username || !password}>
            Sign in
          </Button>
          {me.isError ? <InlineError error={me.error} /> : null}
        </div>
      </form>
    </main>
  );
}
