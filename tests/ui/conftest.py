"""Browser tier: Playwright for Python driving Debian's Chromium against the real server on
the real starter model. Every page gets a watcher that fails the test on a console error, an
uncaught exception, or a request to any origin but Hearth's."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import RunningServer, start_server

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
# Chromium's own calls home are refused by this machine's closed network: keep them off.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"  # gitignored


@pytest.fixture(scope="session")
def browser() -> Iterator[playwright_api.Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@dataclass
class Watch:
    """What a page did that a user would call broken, or that left Hearth's origin."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: playwright_api.Page) -> None:
        def console(msg: playwright_api.ConsoleMessage) -> None:
            if msg.type == "error":
                self.errors.append(f"console: {msg.text}")

        def request(req: playwright_api.Request) -> None:
            parts = urlsplit(req.url)
            if parts.scheme in ("data", "blob", "about"):
                return
            if f"{parts.scheme}://{parts.netloc}" != self.origin:
                self.foreign.append(req.url)

        page.on("console", console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("request", request)

    def check(self, allow: Callable[[str], bool] = lambda _: False) -> None:
        errors = [e for e in self.errors if not allow(e)]
        assert not errors, errors
        assert not self.foreign, f"requests left Hearth's origin: {self.foreign}"


@pytest.fixture
def open_page(
    browser: playwright_api.Browser,
) -> Iterator[Callable[..., tuple[playwright_api.Page, Watch]]]:
    """open_page(server, path="/", phone=False): a fresh browser context (its own session
    storage) on the server, with a Watch. Watches are checked when the test ends, so every
    page must finish with no console error."""
    contexts: list[tuple[playwright_api.BrowserContext, Watch]] = []

    def open_(
        server: RunningServer, path: str = "/", *, phone: bool = False
    ) -> tuple[playwright_api.Page, Watch]:
        ctx = browser.new_context(viewport=PHONE if phone else DESKTOP)
        ctx.set_default_timeout(30_000)
        page = ctx.new_page()
        watch = Watch(server.url)
        watch.attach(page)
        contexts.append((ctx, watch))
        page.goto(server.url + path)
        return page, watch

    yield open_
    for ctx, _ in contexts:
        ctx.close()
    for _, watch in contexts:
        watch.check(getattr(watch, "allow", lambda _: False))


def shot(page: playwright_api.Page, name: str) -> None:
    """A screenshot under build/screenshots; docs/images keeps the ones the README shows."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def no_horizontal_scroll(page: playwright_api.Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    view = page.evaluate("window.innerWidth")
    assert width <= view, f"page is {width}px wide in a {view}px window"


@pytest.fixture(scope="module")
def ui_server(
    tmp_path_factory: pytest.TempPathFactory, starter_model: Path
) -> Iterator[RunningServer]:
    """A server for one test module, its models directory holding a copy of the starter
    (so the models page can delete things without touching the shared one)."""
    tmp = tmp_path_factory.mktemp("ui")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(starter_model, models / starter_model.name)
    server = start_server(tmp, None, models_dir=models)
    yield server
    server.stop()
