"""Helpers the browser journeys share: signing in, screenshots, calls with an API token."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


class Screenshots:
    """Saves one numbered PNG per page visited into a folder named after the journey."""

    def __init__(self, page, folder: Path):
        self.page = page
        self.folder = folder
        self.count = 0
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def __call__(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        # From the top: a full-page shot of a scrolled page draws the sticky header mid-page.
        self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path), full_page=True)
        return path


def sign_in(page, username: str) -> None:
    page.goto("/login")
    page.get_by_label("Username or e-mail").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("current-user").wait_for()


def api(base_url: str, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    """A call with an API token, outside the browser, to check what the server itself allows."""
    request = urllib.request.Request(
        f"{base_url}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
