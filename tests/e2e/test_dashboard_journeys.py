"""The dashboard in a real browser against the real platform (see conftest.py).

The owner's journey follows the product from sign-in to a streamed chat, on the tiny test model
as the base (a local folder is a valid base model), with a real worker training it and the real
inference service answering the Playground.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from e2e.browser import REPO, api, sign_in
from tinymodel import TINY_MODEL

pytestmark = pytest.mark.e2e

DEMO_DATASET = REPO / "examples" / "data" / "demo_dataset.jsonl"


def nav(page, name: str):
    """A link of the sidebar (breadcrumbs repeat some names)."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def create_project(page, shots, name: str) -> None:
    nav(page, "Projects").click()
    page.get_by_role("button", name="New project").click()
    dialog = page.get_by_role("dialog", name="New project")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Description").fill("Support answers for the Quillbox notebook")
    shots("new-project")
    dialog.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    shots("project-overview")


def create_token(page, shots, name: str, scopes: tuple[str, ...] = ("Read",)) -> str:
    nav(page, "Settings").click()
    expect(page.get_by_role("tab", name="API tokens")).to_have_attribute("aria-selected", "true")
    form = page.get_by_role("form", name="Create API token")
    form.get_by_label("Token name").fill(name)
    for scope in ("Read", "Write", "Inference"):
        box = form.get_by_role("checkbox", name=re.compile(f"^{scope}"))
        if box.is_checked() != (scope in scopes):
            box.click()
    form.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("new-token-secret")
    expect(secret).to_contain_text("tf_")
    expect(page.get_by_role("cell", name=name, exact=True)).to_be_visible()
    shots("token-created")
    return secret.inner_text().strip()


def sign_out(page, shots) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shots("signed-out")
    # Signed out means signed out: a protected page sends us back to the sign-in form.
    page.goto("/settings")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_it_signs_in_creates_a_project_and_a_token_and_signs_out(journey, platform):
    page, shots = journey
    page.goto("/projects")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shots("sign-in")
    page.get_by_label("Username or e-mail").fill("alice")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    shots("sign-in-error")
    sign_in(page, "alice")
    expect(page.get_by_test_id("current-user")).to_contain_text("alice")
    shots("projects")
    page.emulate_media(color_scheme="dark")
    shots("projects-dark")
    page.emulate_media(color_scheme="light")

    create_project(page, shots, "Helpdesk")
    # An error from the API shows beside the field that caused it.
    nav(page, "Projects").click()
    page.get_by_role("button", name="New project").click()
    dialog = page.get_by_role("dialog", name="New project")
    dialog.get_by_label("Name").fill("Helpdesk")
    dialog.get_by_role("button", name="Create project").click()
    # The API's reason appears beside the field that caused it.
    name_field = dialog.locator(".field", has=page.get_by_label("Name"))
    expect(name_field.get_by_role("alert")).to_contain_text("already has a project named Helpdesk")
    shots("duplicate-project-error")
    dialog.get_by_role("button", name="Close").click()

    secret = create_token(page, shots, "ci pipeline")
    status, body = api(platform.url, "GET", "/api/v1/projects/", secret)
    assert status == 200 and any(p["name"] == "Helpdesk" for p in body["results"])

    page.get_by_role("tab", name="Members").click()
    expect(page.get_by_role("cell", name="vic", exact=True)).to_be_visible()
    shots("members")
    page.get_by_role("tab", name="Audit log").click()
    expect(page.get_by_role("cell", name="created").first).to_be_visible()
    shots("audit-log")
    sign_out(page, shots)


def test_it_takes_the_owner_from_data_to_a_streamed_chat(journey, platform):
    page, shots = journey
    sign_in(page, "alice")
    create_project(page, shots, "Quillbox support")

    nav(page, "Datasets").click()
    page.get_by_role("button", name="New dataset").first.click()
    page.get_by_role("dialog", name="New dataset").get_by_label("Name").fill("Product FAQ")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_role("heading", name="Product FAQ")).to_be_visible()
    shots("dataset")
    page.get_by_test_id("file-input").set_input_files(str(DEMO_DATASET))
    expect(page.get_by_role("list", name="Files to upload")).to_contain_text(DEMO_DATASET.name)
    page.get_by_role("button", name=re.compile("^Upload 1 file")).click()
    expect(page.get_by_role("heading", name=re.compile("Version 1"))).to_be_visible()
    shots("version-uploaded")

    status = page.locator("h1 .badge")
    expect(status).to_have_text(re.compile("ready|failed"), timeout=120_000)
    if status.inner_text() == "failed":
        shots("version-failed")
        pytest.fail(f"the demo dataset did not import: {page.get_by_role('alert').first.inner_text()}")
    expect(page.get_by_role("heading", name="Validation report")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Rows as the model sees them")).to_be_visible(timeout=60_000)
    # Token lengths measured with the base model's tokenizer, and rows rendered by its template.
    expect(page.get_by_role("heading", name="Token lengths with smollm2-135m-instruct")).to_be_visible(timeout=120_000)
    expect(page.locator(".token-view mark.trained").first).to_be_visible(timeout=120_000)
    shots("validation-report")

    page.get_by_role("link", name="Train on this version").click()
    page.get_by_label("Base model").select_option(TINY_MODEL)  # a model the server offers by name
    expect(page.get_by_label("Dataset version")).to_contain_text("Product FAQ v1")
    page.get_by_text("Advanced hyperparameters").click()
    # The form shows what the quick preset gives a LoRA run, read from the engine's config.
    expect(page.get_by_label("Learning rate")).to_have_value("0.001")
    expect(page.get_by_label("Schedule")).to_have_value("cosine")
    page.get_by_label("Max steps").fill("12")
    page.get_by_label("Eval every N steps").fill("4")
    # A value the engine refuses is named beside its field, and nothing starts.
    page.get_by_label("Batch size").fill("0")
    page.get_by_role("button", name="Start training").click()
    batch_field = page.locator(".field", has=page.get_by_label("Batch size"))
    expect(batch_field.get_by_role("alert")).to_contain_text("batch_size must be at least 1")
    shots("new-run-field-error")
    page.get_by_label("Batch size").fill("4")
    expect(page.get_by_test_id("run-estimate")).to_contain_text(re.compile(r"Estimate: \d+ steps"), timeout=60_000)
    shots("new-run")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
    loss_chart = page.get_by_test_id("chart-Loss")
    expect(loss_chart.locator(".recharts-line").first).to_be_visible(timeout=180_000)
    shots("run-training")
    expect(page.get_by_text("succeeded", exact=True).first).to_be_visible(timeout=300_000)
    expect(loss_chart.locator(".recharts-line").first).to_be_visible()
    expect(page.get_by_text("best", exact=True)).to_be_visible()  # its best checkpoint
    shots("run-succeeded")
    nav(page, "Train").click()
    expect(page.get_by_role("row", name=re.compile("succeeded"))).to_have_count(1)
    shots("runs")

    page.get_by_role("link", name=re.compile("^quick-lora")).click()
    page.get_by_role("link", name="Deploy").click()
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_text("ready", exact=True).first).to_be_visible(timeout=180_000)
    expect(page.get_by_label("curl example")).to_contain_text(f"{platform.url}/v1/chat/completions")
    shots("services")

    nav(page, "Playground").click()
    page.get_by_label("Temperature: 0.70").fill("1.5")
    page.get_by_label("Max tokens").fill("64")  # the tiny model's context is 256 tokens
    page.get_by_label("Message").fill("How long does the Quillbox battery last?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".chat-message.assistant .chat-text:not(.muted)").last
    expect(answer).to_have_text(re.compile(r"\S"), timeout=120_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=120_000)  # the stream ended
    shots("playground")

    nav(page, "Logs").click()
    expect(page.get_by_role("log", name="Events")).to_contain_text("succeeded after 12 steps")
    shots("logs")
    nav(page, "Services").click()
    # The inference service's counters reach the deployment's statistics within seconds.
    expect(page.get_by_text("Requests", exact=True).locator("xpath=..")).to_contain_text("1", timeout=60_000)
    shots("services-after-chat")
    exports = page.get_by_role("form", name="New export")
    exports.get_by_label("Format").select_option("hf")
    exports.get_by_role("button", name="Export").click()
    download_link = page.get_by_role("link", name="Download")
    expect(download_link).to_be_visible(timeout=180_000)
    with page.expect_download() as download:
        download_link.click()
    assert download.value.suggested_filename.endswith(".zip"), download.value.suggested_filename
    shots("services-export")

    create_token(page, shots, "openai client", scopes=("Read", "Inference"))
    sign_out(page, shots)


def test_a_viewer_sees_no_write_buttons_and_the_api_refuses_writes(journey, platform):
    page, shots = journey
    sign_in(page, "vic")
    expect(page.get_by_text("Acme · viewer")).to_be_visible()
    expect(page.get_by_role("button", name="New project")).to_have_count(0)
    shots("projects")
    page.get_by_role("link", name="Acme launch").click()
    expect(page.get_by_role("button", name="Delete project")).to_have_count(0)
    shots("project")
    nav(page, "Datasets").click()
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    expect(page.get_by_role("button", name="New dataset")).to_have_count(0)
    shots("datasets")
    nav(page, "Train").click()
    expect(page.get_by_role("heading", name="Training runs")).to_be_visible()
    expect(page.get_by_role("link", name="New run")).to_have_count(0)
    shots("runs")
    nav(page, "Settings").click()
    page.get_by_role("tab", name="Members").click()
    expect(page.get_by_role("cell", name="alice", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Add member")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    shots("members")

    # The buttons are hidden, and the API refuses the writes anyway: with the viewer's session...
    page.get_by_role("tab", name="API tokens").click()
    form = page.get_by_role("form", name="Create API token")
    expect(form.get_by_role("checkbox", name=re.compile("^Write"))).to_be_disabled()
    post = """async ([path, body]) => {
        const token = document.cookie.split('; ').find((c) => c.startsWith('csrftoken='))?.split('=')[1];
        const response = await fetch(path, {
            method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRFToken': token ?? ''},
            body: JSON.stringify(body),
        });
        return [response.status, await response.json()];
    }"""
    status, body = page.evaluate(post, ["/api/v1/projects/", {"team": 1, "name": "sneaky"}])
    assert status == 403, body
    status, body = page.evaluate(post, ["/api/v1/tokens/", {"team": 1, "name": "w", "scopes": ["write"]}])
    assert status == 400 and "cannot write" in " ".join(body["error"]["fields"]["scopes"]), body
    # ...and with an API token the viewer made.
    secret = create_token(page, shots, "viewer read")
    status, body = api(platform.url, "POST", "/api/v1/projects/", secret, {"team": 1, "name": "sneaky"})
    assert status == 403, body
    assert body["error"]["code"]
    status, body = api(platform.url, "GET", "/api/v1/projects/", secret)
    assert status == 200 and "Acme launch" in [p["name"] for p in body["results"]]


def test_the_dashboard_is_served_under_a_policy_the_browser_enforces(browser, platform):
    """The journeys above fail on any refusal the policy causes; this checks that there is a
    policy to cause one: the index page carries it, and Chromium refuses a script injected inline."""
    from django.conf import settings

    context = browser.new_context(base_url=platform.url)
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda message: message.type == "error" and refused.append(message.text))
    try:
        response = page.goto("/")
        assert response.headers["content-security-policy"] == settings.DASHBOARD_CSP
        assert response.headers["x-frame-options"] == "DENY"
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.evaluate("""() => { const script = document.createElement("script");
            script.textContent = "window.injected = true"; document.head.append(script); }""")
        assert page.evaluate("window.injected") is None
        assert any("Content Security Policy" in text for text in refused), refused
        # Django admin's pages live under the same policy, and work under it.
        refused.clear()
        admin = page.goto("/admin/login/")
        assert admin.headers["content-security-policy"] == settings.DASHBOARD_CSP
        expect(page.get_by_label("Username")).to_be_visible()
        assert refused == []
    finally:
        context.close()
