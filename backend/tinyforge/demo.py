"""`tinyforge demo`: the whole product on one machine, on embedded defaults.

Migrates, makes sure a demo team, user and project exist (printing the login), starts the
embedded Redis when REDIS_URL is unset, then the child processes listed in `demo_processes`
(web server, inference service, RQ training workers, the scheduler), prints the URL and stops
everything it started on Ctrl-C or SIGTERM. A second run reuses the database, the login and a
Redis that is still running.

A child that exits is restarted, as compose's restart policy restarts a container: what is left
of its session goes first (an RQ worker's work horse with it), then it starts again after a backoff that
doubles with each crash in a row. One that keeps crashing within seconds of its start is given
up on, and the demo stops with the reason. A run whose worker died is the reconciler's, as
anywhere else: failed (or resumed) once its heartbeat is stale.
Django is imported inside the handler so `tinyforge --help` stays fast.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from tinyforge.errors import TinyforgeError

DEMO_USERNAME = "demo"
DEMO_TEAM = "Demo team"
DEMO_PROJECT = "Demo project"
STOP_GRACE_SECONDS = 15
# A child that lived this long before it exited was working: its next restart waits the first
# backoff again. Crashing sooner counts towards giving up, after FAST_CRASH_LIMIT in a row (as
# supervisord's startsecs and startretries).
STEADY_SECONDS = 30.0
FAST_CRASH_LIMIT = 5
FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 1.0, 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    fast_crashes: int = 0  # exits in a row, each within STEADY_SECONDS of its start
    restart_at: float | None = None  # when the exited child starts again


class GaveUp(Exception):
    """A child crashed FAST_CRASH_LIMIT times in a row soon after starting."""


class Supervisor:
    """Starts the children, restarts the ones that exit, stops them all."""

    def __init__(self, children: list[Child], env: dict[str, str]):
        self.children, self.env = children, env

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        # Own process group: Ctrl-C reaches us once, and we stop each child and its workers.
        child.process = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None

    def check(self) -> None:
        """Restart children that exited once their backoff is over; raises GaveUp."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None:
                status = child.process.poll()
                if status is None:
                    continue
                _kill_session(child.process.pid)  # what it left behind, such as a work horse mid-job
                ran = now - child.started_at
                child.fast_crashes = child.fast_crashes + 1 if ran < STEADY_SECONDS else 1
                how = f"killed by {_signal_name(-status)}" if status < 0 else f"status {status}"
                if child.fast_crashes >= FAST_CRASH_LIMIT:
                    raise GaveUp(f"{child.name} exited ({how}) {child.fast_crashes} times in a row within "
                                 f"{STEADY_SECONDS:.0f} s of starting; giving up")
                delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (child.fast_crashes - 1))
                print(f"tinyforge demo: {child.name} exited ({how}) after {ran:.0f} s; restarting it in {delay:g} s",
                      file=sys.stderr, flush=True)
                child.restart_at = now + delay
            elif now >= child.restart_at:
                self._spawn(child)
                print(f"tinyforge demo: {child.name} restarted (pid {child.process.pid})", file=sys.stderr, flush=True)

    def stop(self) -> None:
        running = [c for c in self.children if c.process is not None and c.restart_at is None]
        for child in running:
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_session(child.process.pid)
            child.process.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_session(sid: int) -> None:
    """SIGKILL every process left in a child's session (each child leads one of its own). The
    session, not the process group: RQ puts each work horse in a group of its own, and a horse
    whose worker died would otherwise train on, unsupervised, after the demo stopped."""
    import psutil

    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # gone meanwhile


def register(subparsers) -> None:
    """Add this area's subcommands to the `tinyforge` parser."""
    demo = subparsers.add_parser(
        "demo", help="run the whole platform locally (web, workers, scheduler, embedded Redis)",
        description="Bring up TinyForgeAI on this machine with SQLite and an embedded Redis, and print the URL and login.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address the web server listens on")
    demo.add_argument("--port", type=int, default=8000, help="port of the web server")
    demo.add_argument("--workers", type=int, default=1, help="RQ training worker processes (each runs one job at a time)")
    demo.add_argument("--inference-port", type=int, default=8001,
                      help="port of the inference service on 127.0.0.1 (the web server passes /v1/ on to it)")
    demo.set_defaults(func=run_demo)


def demo_processes(args, python: str) -> list[Child]:
    """Everything `tinyforge demo` runs beside itself (after django.setup(): the queue names come
    from the worker module)."""
    from tinyforge.core.worker import CONTROL_QUEUE, EVAL_QUEUE, WORK_QUEUES

    children = [
        Child("web", [python, "-m", "gunicorn", "tinyforge.wsgi:application", "--bind", f"{args.host}:{args.port}",
                      "--workers", "2", "--threads", "8", "--timeout", "120", "--access-logfile", "-"]),
    ]
    # The deployments behind the OpenAI API; the web server passes /v1/ model and completion
    # requests on to it (TINYFORGE_INFERENCE_URL), so the demo keeps one origin without nginx.
    children.append(Child("inference", [python, "-m", "tinyforge.cli", "serve-platform", "--host", "127.0.0.1",
                                        "--port", str(args.inference_port)]))
    for n in range(args.workers):
        children.append(Child(f"worker-{n + 1}", [python, "-m", "django", "rqworker", *WORK_QUEUES]))
    # The periodic reconcilers on a process of their own: a worker busy training for hours would
    # otherwise leave a run whose worker died "running" until it finished.
    children.append(Child("scheduler", [python, "-m", "django", "rqworker", "--with-scheduler", CONTROL_QUEUE]))
    # Evaluations apart from training, so a run's evaluation and gate check start when it ends.
    children.append(Child("evaluator", [python, "-m", "django", "rqworker", EVAL_QUEUE]))
    return children


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _ensure_demo_data(settings) -> tuple[str, str | None]:
    """The demo login (user name, password or None when it was set before this tool kept it)."""
    from tinyforge.accounts.services import ensure_user_with_team
    from tinyforge.projects.models import Project

    password_file = settings.TINYFORGE_DATA_DIR / "demo_password"
    password = password_file.read_text().strip() if password_file.exists() else None
    if password is None:
        password = secrets.token_urlsafe(12)
    user, team, created = ensure_user_with_team(
        username=DEMO_USERNAME, email="demo@example.com", password=password, team_name=DEMO_TEAM
    )
    if created:
        password_file.touch(mode=0o600)
        password_file.write_text(password)
    elif not password_file.exists():
        password = None
    Project.all_teams.get_or_create(team=team, name=DEMO_PROJECT, defaults={"created_by": user})
    return user.username, password


def run_demo(args) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tinyforge.settings")
    try:
        import django

        django.setup()
    except Exception as exc:  # a bad setting: say which, no traceback
        raise TinyforgeError(f"cannot load the settings: {exc}") from exc
    from django.conf import settings
    from django.core.management import call_command

    from tinyforge.core.embedded_redis import EmbeddedRedis

    if not _port_is_free(args.host, args.port):
        raise TinyforgeError(f"port {args.port} on {args.host} is in use: stop what runs there or pass --port")
    if not _port_is_free("127.0.0.1", args.inference_port):
        raise TinyforgeError(f"port {args.inference_port} on 127.0.0.1 (the inference service) is in use: stop what "
                             "runs there or pass --inference-port")
    print(f"data directory: {settings.TINYFORGE_DATA_DIR}")
    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    username, password = _ensure_demo_data(settings)

    redis = None
    env = dict(os.environ, TINYFORGE_DATA_DIR=str(settings.TINYFORGE_DATA_DIR),
               DJANGO_SETTINGS_MODULE=os.environ["DJANGO_SETTINGS_MODULE"], PYTHONUNBUFFERED="1",
               TINYFORGE_INFERENCE_URL=f"http://127.0.0.1:{args.inference_port}")
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    else:
        redis = EmbeddedRedis(settings.EMBEDDED_REDIS_SOCKET, settings.TINYFORGE_DATA_DIR).start()
        env["REDIS_URL"] = redis.url

    supervisor = Supervisor(demo_processes(args, sys.executable), env)
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        supervisor.start()
        if not _wait_for_web(args, supervisor, lambda: stopping):
            status = 0 if stopping else 1
        else:
            host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0") else args.host
            print("\nTinyForgeAI is running.")
            print(f"  dashboard and API: http://{host}:{args.port}/   (API docs: /api/docs/)")
            print(f"  OpenAI API:        http://{host}:{args.port}/v1  (an API token with the inference scope)")
            shown = password if password else "(unchanged; reset with `backend/manage.py changepassword demo`)"
            print(f"  sign in as:        {username} / {shown}")
            print("Press Ctrl-C to stop everything this command started; a process that crashes is restarted.\n",
                  flush=True)
            while not stopping:
                supervisor.check()
                time.sleep(0.5)
    except GaveUp as exc:
        print(f"tinyforge demo: {exc}; stopping", file=sys.stderr)
        status = 1
    finally:
        print("stopping...", flush=True)
        supervisor.stop()
        if redis is not None:
            redis.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _wait_for_web(args, supervisor: Supervisor, stopping, timeout: float = 60.0) -> bool:
    """True once the web server answers; False when asked to stop or past the timeout. A child
    that exits meanwhile is restarted (GaveUp when it keeps crashing)."""
    import httpx

    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/api/v1/health/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        supervisor.check()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    if not stopping():
        print(f"tinyforge demo: the web server did not answer {url} within {timeout:.0f}s", file=sys.stderr)
    return False
