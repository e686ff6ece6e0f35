"""The models, status, requests and settings pages in a real browser against the real server
on the real starter model: what a person does there, and that the server saw it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import STARTER_ID, RunningServer, start_server
from tests.hub import FakeHub, HubServer
from tests.ui.conftest import Watch, no_horizontal_scroll, shot

pytestmark = pytest.mark.e2e

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
OpenPage = Callable[..., tuple[Page, Watch]]


def card(page: Page, model: str) -> Locator:
    return page.locator(f'article.model[data-model="{model}"]')


def chat(server: RunningServer, model: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 4,
        },
        headers=headers,
        timeout=120,
    )


def loaded(server: RunningServer) -> list[str]:
    return [m["id"] for m in server.status()["models"]]


def leave(*pages: Page) -> None:
    """Close pages before their server stops: their polls would fail, and fail the watch."""
    for p in pages:
        p.context.close()


def screens(page: Page, name: str, phone_page: Page) -> None:
    """The page at desktop and phone size, neither scrolling sideways."""
    for p, size in ((page, "desktop"), (phone_page, "phone")):
        no_horizontal_scroll(p)
        shot(p, f"{name}-{size}")


def test_models_load_unload_shows_in_status(ui_server: RunningServer, open_page: OpenPage) -> None:
    page, _ = open_page(ui_server, "/#/models")
    starter = card(page, STARTER_ID)
    expect(starter.locator(".badge")).to_have_text("available")
    expect(starter.locator("dl.facts")).to_contain_text("Q4_1")
    expect(starter.locator("dl.facts")).to_contain_text("llama")
    expect(starter.locator("dl.facts")).to_contain_text("135M")
    expect(starter.locator("dl.facts")).to_contain_text("98 MB")

    starter.get_by_role("button", name="Load").click()
    expect(starter.locator(".badge")).to_have_text("loaded", timeout=60_000)
    expect(starter.locator("dl.facts")).to_contain_text("Memory")
    assert loaded(ui_server) == [STARTER_ID]
    phone, _ = open_page(ui_server, "/#/models", phone=True)
    expect(card(phone, STARTER_ID).locator(".badge")).to_have_text("loaded")
    screens(page, "models", phone)

    page.goto(ui_server.url + "/#/status")
    model = card(page, STARTER_ID)
    expect(model).to_contain_text("Memory")
    expect(model).to_contain_text("of 4 sequences")
    expect(model.locator("[data-until]")).to_have_count(1)  # the keep-alive countdown
    expect(page.locator("section.server")).to_contain_text(ui_server.url.split("//")[1])

    page.goto(ui_server.url + "/#/models")
    card(page, STARTER_ID).get_by_role("button", name="Unload").click()
    expect(card(page, STARTER_ID).locator(".badge")).to_have_text("available")
    assert loaded(ui_server) == []
    page.goto(ui_server.url + "/#/status")
    expect(page.locator("#loaded-models")).to_have_text("No model is loaded.")


def test_delete_asks_first(
    ui_server: RunningServer, open_page: OpenPage, starter_model: Path
) -> None:
    models = Path(httpx.get(f"{ui_server.url}/api/settings").json()["settings"]["models_dir"])
    spare = models / "spare-copy.gguf"
    shutil.copy(starter_model, spare)
    page, _ = open_page(ui_server, "/#/models")
    target = card(page, "spare-copy")
    dialog = page.locator("#delete-dialog")

    target.get_by_role("button", name="Delete").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("spare-copy.gguf")
    page.keyboard.press("Escape")  # Esc and Cancel both leave it alone
    expect(dialog).to_be_hidden()
    target.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Cancel").click()
    assert spare.exists()

    target.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(target).to_have_count(0)
    expect(page.get_by_role("status")).to_contain_text("Deleted spare-copy")
    assert not spare.exists()
    expect(card(page, STARTER_ID)).to_be_visible()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with HubServer() as running:
        yield running


def test_pull_shows_progress_and_cancels(
    hub: FakeHub, starter_model: Path, tmp_path: Path, open_page: OpenPage
) -> None:
    mib = 2**20
    hub.add("someone/cancelled-GGUF", "cancel-me.gguf", starter_model, stall_after=8 * mib)
    hub.add(REPO, starter_model.name, starter_model, stall_after=20 * mib)
    hub.stall_seconds = 3
    config = tmp_path / "hearth.toml"
    config.write_text(f'hf_endpoint = "{hub.url}"\n')
    server = start_server(tmp_path, None, config=config)
    try:
        page, _ = open_page(server, "/#/models")
        bar, text = page.locator("#pull-bar"), page.locator("#pull-text")

        page.get_by_label("Name or URL").fill("someone/cancelled-GGUF/cancel-me.gguf")
        page.get_by_role("button", name="Pull").click()
        expect(text).to_contain_text("%")  # bytes are counted while it stalls
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator(".pull .notice")).to_have_text("Pull cancelled.")
        expect(bar).to_be_hidden()
        expect(card(page, "cancel-me")).to_have_count(0)

        page.get_by_label("Name or URL").fill(f"{REPO}:Q4_1")
        page.get_by_label("Name or URL").press("Enter")
        # Stalled at 20 MiB: the bar stands part-way for a while.
        page.wait_for_function(
            "(min) => document.getElementById('pull-bar').value > min", arg=8 * mib
        )
        assert bar.evaluate("el => el.value") < starter_model.stat().st_size
        expect(text).to_contain_text(" of 98 MB")
        shot(page, "models-pull-desktop")
        expect(page.locator(".pull .notice")).to_have_text(f"Pulled {STARTER_ID}.", timeout=60_000)
        expect(card(page, STARTER_ID).locator(".badge")).to_have_text("available")
        # The cancelled one stopped on the server too: never resumed, never finished.
        assert len(hub.ranges("cancel-me.gguf")) == 1
        assert not (tmp_path / "models" / "cancel-me.gguf").exists()
        leave(page)
    finally:
        server.stop()


def test_requests_log_shows_statuses_and_details(
    ui_server: RunningServer, open_page: OpenPage
) -> None:
    assert chat(ui_server, STARTER_ID).status_code == 200
    assert chat(ui_server, "no-such-model").status_code == 404
    page, _ = open_page(ui_server, "/#/requests")
    phone, _ = open_page(ui_server, "/#/requests", phone=True)
    rows = page.locator("table.requests tbody tr")
    good = rows.filter(has_text=STARTER_ID).filter(has_text="/v1/chat/completions").first
    # An unknown model is logged without one: the route and the error code tell it apart.
    bad = rows.filter(has_text="/v1/chat/completions").filter(has_text="model_not_found").first
    expect(good.locator("td").nth(4)).to_contain_text("200")
    expect(good).not_to_have_class("failed")
    expect(bad.locator("td").nth(4)).to_contain_text("404")
    expect(bad.locator("td").nth(4)).to_contain_text("model_not_found")
    expect(bad).to_have_class("failed")
    expect(phone.locator("table.requests tbody tr").first).to_be_visible()
    screens(page, "requests", phone)

    page.get_by_label("Failures only").check()
    expect(rows.filter(has_text=STARTER_ID)).to_have_count(0)
    statuses = [int(s) for s in rows.evaluate_all("rs => rs.map(r => r.dataset.status)")]
    assert statuses and all(s >= 400 for s in statuses)
    page.get_by_label("Failures only").uncheck()
    page.get_by_label("Route").fill("/v1/chat/completions")
    page.get_by_label("Status").fill("200")
    page.get_by_label("Status").press("Enter")
    expect(rows).to_have_count(1)

    rows.first.get_by_role("button").press("Enter")  # by keyboard: the time is a button
    detail = page.locator("#request-detail")
    expect(detail).to_be_visible()
    expect(detail.locator('[data-field="model"]')).to_have_text(STARTER_ID)
    expect(detail.locator('[data-field="status"]')).to_have_text("200")
    expect(detail.locator('[data-field="completion_tokens"]')).to_have_text(
        re.compile(r"^[1-9]\d*$")
    )
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()


def test_requests_pages_through_the_log(ui_server: RunningServer, open_page: OpenPage) -> None:
    for _ in range(55):  # more than one page of 50
        httpx.get(f"{ui_server.url}/v1/models/no-such-model")
    page, _ = open_page(ui_server, "/#/requests")
    rows = page.locator("table.requests tbody tr")
    expect(rows).to_have_count(50)
    first = rows.first.get_attribute("data-seq")
    page.get_by_role("button", name="Older").click()
    expect(rows.first).not_to_have_attribute("data-seq", first or "")
    assert int(rows.first.get_attribute("data-seq") or 0) < int(first or 0)
    page.get_by_role("button", name="Newer").click()
    # The first page again (the page's own GET /v1/models may have logged a row above it).
    expect(page.locator(f'tr[data-seq="{first}"]')).to_have_count(1)


def test_status_charts_update_live(ui_server: RunningServer, open_page: OpenPage) -> None:
    for _ in range(2):
        assert chat(ui_server, STARTER_ID).status_code == 200
    page, _ = open_page(ui_server, "/#/status")
    phone, _ = open_page(ui_server, "/#/status", phone=True)
    charts = page.locator("#charts svg.chart")
    expect(charts).to_have_count(3)
    expect(page.locator("#chart-rpm rect.bar").first).to_be_visible()
    expect(page.locator("#chart-tps path.line, #chart-tps circle.dot").first).to_be_visible()
    expect(page.locator("#chart-ttft path.line, #chart-ttft circle.dot").first).to_be_visible()
    expect(phone.locator("#charts svg.chart")).to_have_count(3)
    screens(page, "status", phone)

    caption = page.locator("#chart-rpm figcaption")
    before = caption.inner_text()
    assert chat(ui_server, STARTER_ID).status_code == 200
    expect(caption).not_to_have_text(before, timeout=15_000)  # the next poll redraws it


def test_settings_saved_survive_a_restart(tmp_path: Path, open_page: OpenPage) -> None:
    config, data, models = tmp_path / "hearth.toml", tmp_path / "data", tmp_path / "models"
    config.write_text("# mine\n")
    server = start_server(tmp_path, None, config=config, data_dir=data, models_dir=models)
    try:
        page, watch = open_page(server, "/#/settings")
        watch.allow = lambda e: "400 (Bad Request)" in e  # the refused value, on purpose
        phone, _ = open_page(server, "/#/settings", phone=True)
        keep = page.get_by_label("Keep-alive")
        expect(keep).to_have_value("5m")
        expect(page.locator('[data-setting="port"] [data-applies="restart"]')).to_have_text(
            "takes effect after a restart"
        )
        screens(page, "settings", phone)

        keep.fill("whenever")
        page.get_by_role("button", name="Save").click()
        error = page.locator("#set-keep_alive-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("Keep-alive")
        expect(keep).to_have_attribute("aria-invalid", "true")
        assert "keep_alive" not in config.read_text()

        keep.fill("10m")
        page.get_by_label("Request log days").fill("30")
        page.get_by_label("Models directory").fill(str(tmp_path / "elsewhere"))
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#restart-pending")).to_contain_text("Models directory")
        expect(error).to_be_hidden()
        assert httpx.get(f"{server.url}/api/settings").json()["settings"]["keep_alive"] == "10m"
        leave(page, phone)
    finally:
        server.stop()
    text = config.read_text()
    assert text.startswith("# mine") and 'keep_alive = "10m"' in text

    server = start_server(tmp_path, None, config=config, data_dir=data, models_dir=models)
    try:
        page, _ = open_page(server, "/#/settings")
        expect(page.get_by_label("Keep-alive")).to_have_value("10m")
        expect(page.get_by_label("Request log days")).to_have_value("30")
        leave(page)
    finally:
        server.stop()


def test_a_key_protected_server_asks_for_the_key(
    tmp_path: Path, starter_model: Path, open_page: OpenPage
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / starter_model.name).symlink_to(starter_model)
    server = start_server(
        tmp_path, None, "--api-key", "secret-1", "--request-log-bodies", models_dir=models
    )
    try:
        hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": hostile}]},
            headers={"authorization": "Bearer secret-1"},
        )
        assert r.status_code == 404
        page, watch = open_page(server, "/#/models")
        watch.allow = lambda e: "401" in e  # the browser logs each refused call
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.get_by_label("Key", exact=True).fill("wrong")
        page.get_by_label("Key", exact=True).press("Enter")
        expect(page.locator("#key-error")).to_have_text("That key was refused.")
        page.get_by_label("Key", exact=True).fill("secret-1")
        page.get_by_role("button", name="Use key").click()
        expect(dialog).to_be_hidden()
        expect(card(page, STARTER_ID).locator(".badge")).to_have_text("available")

        # The key is kept for the session: the other pages work without asking again.
        page.goto(server.url + "/#/requests")
        bad = page.locator("tr.failed").filter(has_text="model_not_found")
        bad.get_by_role("button").click()
        body = page.locator('#request-detail pre[data-field="request_body"]')
        expect(body).to_contain_text(hostile)  # as text: no element was made of it
        assert page.locator("#request-detail img, #request-detail script").count() == 0
        expect(dialog).to_be_hidden()
        leave(page)
    finally:
        server.stop()
