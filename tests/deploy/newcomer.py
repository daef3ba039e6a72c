"""`make newcomer`: follow docs/getting-started.md literally, as someone new to the project would.

1. A fresh clone of this repository's committed HEAD in a temporary folder (so what is only in a
   working tree does not count), with none of this shell's TinyForgeAI settings.
2. `make demo` there: a fresh virtualenv, the pinned install, the dashboard build. Waits for the
   "sign in as:" line and reads the URL and the login from it.
3. The dashboard answers: index.html and the script it loads.
4. An API token, made by running docs/api.md's curl block (sign in, create a token).
5. The curl block of docs/getting-started.md, with that token.
6. examples/journey.py (what the dashboard does in step 3 of the guide, through the REST API): a
   quick training on examples/data/demo_dataset.jsonl, a deployment, a streamed chat; then the
   guide's openai-client block, which must print an answer.
7. Ctrl-C (SIGINT to make's process group, as a terminal sends it): everything stops.

It takes minutes (the install, the training) and needs port 8000 free, as the guide does. The
temporary folder is kept when a step fails, with the demo's output in demo.log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 40 * 60
TRAIN_TIMEOUT = 30 * 60
# The demo reads these; a newcomer's shell has none of them.
FOREIGN_SETTINGS = re.compile(r"^(TINYFORGE_|DATABASE_URL|REDIS_URL|SECRET_KEY|VIRTUAL_ENV|DJANGO_)")


class NewcomerFailure(Exception):
    """A step of the guide did not do what the guide says."""


def say(message: str) -> None:
    print(f"[newcomer] {message}", flush=True)


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def block_containing(path: Path, marker: str, language: str = "bash") -> str:
    for block in fenced_blocks(path.read_text(), language):
        if marker in block:
            return block
    raise NewcomerFailure(f"{path.name} has no {language} block containing {marker!r}")


def json_values(text: str) -> list:
    """The JSON documents curl printed one after another (curl adds no newline between them)."""
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(text, index)
        values.append(value)
    return values


def run_bash(script: str, cwd: Path, env: dict[str, str], what: str) -> str:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise NewcomerFailure(f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Demo:
    """`make demo` in the clone, its output copied to demo.log and scanned for the login."""

    def __init__(self, clone: Path, env: dict[str, str], log: Path):
        self.log = log.open("w")
        self.lines: list[str] = []
        self.process = subprocess.Popen(["make", "demo"], cwd=clone, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.log.write(line)
            self.log.flush()
            self.lines.append(line.rstrip("\n"))

    def wait_for_login(self, timeout: float) -> tuple[str, str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "\n".join(self.lines)
            url = re.search(r"dashboard and API:\s+(\S+)", text)
            login = re.search(r"sign in as:\s+(\S+) / (\S+)", text)
            if url and login:
                return url.group(1).rstrip("/"), login.group(1), login.group(2)
            if self.process.poll() is not None:
                raise NewcomerFailure(f"make demo exited with {self.process.returncode} before printing the login")
            time.sleep(1)
        raise NewcomerFailure(f"make demo printed no login within {timeout:.0f}s")

    def interrupt(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise NewcomerFailure("make demo did not stop within 60s of Ctrl-C") from None
        finally:
            self.reader.join(timeout=5)
            self.log.close()


def check_dashboard(url: str) -> None:
    page = httpx.get(f"{url}/", timeout=30)
    if page.status_code != 200 or "<div id=\"root\">" not in page.text:
        raise NewcomerFailure(f"GET {url}/ answered {page.status_code}, not the dashboard's index.html")
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page.text)
    if not scripts:
        raise NewcomerFailure("the dashboard's index.html loads no script")
    for src in scripts:
        asset = httpx.get(f"{url}{src}" if src.startswith("/") else f"{url}/{src}", timeout=30)
        if asset.status_code != 200 or "javascript" not in asset.headers.get("content-type", ""):
            raise NewcomerFailure(f"GET {src} answered {asset.status_code} {asset.headers.get('content-type')}")


def create_token(clone: Path, env: dict[str, str], username: str, password: str) -> str:
    block = block_containing(clone / "docs" / "api.md", "/api/v1/tokens/")
    block = block.replace("YOUR_USER", username).replace("YOUR_PASSWORD", password)
    output = run_bash(block, clone, env, "docs/api.md's token block")
    # The block's last command prints the new token as JSON.
    return json_values(output)[-1]["token"]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="tinyforge-newcomer-"))
    clone = work / "tinyforge"
    env = {name: value for name, value in os.environ.items() if not FOREIGN_SETTINGS.match(name)}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO)))
    demo = None
    try:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", 8000)) == 0:
                raise NewcomerFailure("port 8000 is in use; the guide's `make demo` needs it: stop what runs there")
        say(f"fresh clone of {REPO} (committed HEAD) in {clone}")
        subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO), str(clone)], check=True)

        say("make demo (fresh virtualenv, pinned install, dashboard build: minutes the first time)")
        demo = Demo(clone, env, work / "demo.log")
        url, username, password = demo.wait_for_login(INSTALL_TIMEOUT)
        say(f"make demo printed {url}, sign in as {username}")

        check_dashboard(url)
        say("the dashboard answers")

        guide_env = dict(env, TINYFORGE_URL=url)
        token = create_token(clone, guide_env, username, password)
        guide_env["TINYFORGE_TOKEN"] = token
        say("docs/api.md's curl block created a token")

        curl_block = block_containing(clone / "docs" / "getting-started.md", 'curl -fsS -H "Authorization')
        curl_block = re.sub(r"^export TINYFORGE_(URL|TOKEN)=.*$", "", curl_block, flags=re.MULTILINE)
        output = run_bash(curl_block, clone, guide_env, "getting-started's curl block")
        me, projects = json_values(output)
        if me["username"] != username or not any(p["name"] == "Demo project" for p in projects["results"]):
            raise NewcomerFailure(f"getting-started's curl block answered {output}")
        say("getting-started's curl block answers as the guide says")

        say("examples/journey.py: upload the demo dataset, quick training, deploy, chat (minutes on a CPU)")
        journey = subprocess.run([str(clone / ".venv" / "bin" / "python"), "examples/journey.py"], cwd=clone,
                                 env=guide_env, text=True, timeout=TRAIN_TIMEOUT)
        if journey.returncode != 0:
            raise NewcomerFailure(f"examples/journey.py exited {journey.returncode}")

        chat_block = block_containing(clone / "docs" / "getting-started.md", ".venv/bin/python - <<'EOF'")
        answer = run_bash(chat_block, clone, guide_env, "getting-started's openai block")
        if "model:" not in answer or len(answer.strip().splitlines()) < 2:
            raise NewcomerFailure(f"getting-started's openai block printed {answer!r}")
        say(f"getting-started's openai block printed:\n{answer}")
    except (NewcomerFailure, httpx.HTTPError, subprocess.TimeoutExpired) as failure:
        say(f"FAILED: {failure}")
        if demo is not None:
            demo.interrupt()
        say(f"kept {work} (demo output in demo.log)")
        return 1

    status = demo.interrupt()
    if status not in (0, 2, 130):  # make reports an interrupted recipe as 2
        say(f"FAILED: make demo exited {status} after Ctrl-C; kept {work}")
        return 1
    if any("Traceback" in line for line in demo.lines):
        say(f"FAILED: make demo printed a traceback; kept {work}")
        return 1
    say("make demo stopped on Ctrl-C")
    shutil.rmtree(work, ignore_errors=True)
    say("PASSED: docs/getting-started.md works as written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
