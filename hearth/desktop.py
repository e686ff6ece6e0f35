"""`hearth desktop`: the server in this process and its web UI in a native window (pywebview:
Qt WebEngine from PyPI, or GTK where PyGObject is there; the system's webview on macOS and
Windows). The GUI loop must own the main thread, so uvicorn runs in a thread beside it. Closing
the window, its Quit menu, SIGTERM or Ctrl-C stop the server as a signal stops `hearth serve`:
drained, then the models unloaded and the database closed. The window's size and position are
kept in window.json beside config.toml."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

from hearth.errors import ConfigError
from hearth.server import BackgroundServer, local_url
from hearth.settings import APP_NAME, Settings

log = logging.getLogger("hearth")

TITLE = "Hearth"
MIN_SIZE = (480, 360)


def geometry_file() -> Path:
    """Where the window's size and position are kept between runs."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "window.json"


@dataclass
class Geometry:
    """The window's size and, once it has been moved, its position (None: centred)."""

    width: int = 1200
    height: int = 800
    x: int | None = None
    y: int | None = None

    @classmethod
    def load(cls, path: Path) -> Geometry:
        """The saved geometry; the default one when the file is missing or not ours."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()

        def number(name: str) -> int | None:
            value = data.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        width, height, x, y = (number(n) for n in ("width", "height", "x", "y"))
        return cls(
            width=max(width, MIN_SIZE[0]) if width is not None else cls.width,
            height=max(height, MIN_SIZE[1]) if height is not None else cls.height,
            x=x if x is not None and y is not None else None,
            y=y if x is not None and y is not None else None,
        )

    def on_screen(self, screens: Iterable[Any]) -> bool:
        """Whether the top of the window, where it is dragged from, lies on one of the screens
        (a monitor may have gone since); pywebview's Screen has x, y, width and height."""
        if self.x is None or self.y is None:
            return True
        x, y = self.x + 100, self.y + 20
        return any(s.x <= x < s.x + s.width and s.y <= y < s.y + s.height for s in screens)

    def save(self, path: Path) -> None:
        """Write it whole (a temporary file renamed over the old one); failures only warn."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".json.tmp")
            partial.write_text(json.dumps(asdict(self)) + "\n")
            partial.replace(path)
        except OSError as exc:
            log.warning("could not save the window geometry to %s: %s", path, exc)


def window_url(host: str, port: int) -> str:
    """The address the window opens: the UI at the server's local address."""
    return local_url(host, port) + "/"


@contextmanager
def signals_call(handler: Callable[[int], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler` in a thread of their own. Python runs its signal
    handlers in the main thread between bytecodes, which never comes while the GUI loop holds
    it in native code; the byte the C-level handler writes to the wakeup fd still arrives."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda _sig, _frame: None) for sig in wanted}
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch() -> None:
        while data := reader.recv(16):
            for sig in data:
                if sig in wanted:
                    handler(sig)

    watcher = threading.Thread(target=watch, name="hearth-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
        writer.close()  # the watcher reads end-of-file and returns
        watcher.join(timeout=1)
        reader.close()


def run_desktop(settings: Settings) -> None:
    """Serve in a thread, show the UI in a window until it closes, then stop the server."""
    import webview  # the desktop extra; the CLI checks it is there
    from webview.errors import WebViewException
    from webview.menu import Menu, MenuAction

    if "port" not in settings.model_fields_set:  # beside a `hearth serve` on the default port
        settings = settings.model_copy(update={"port": 0})
    if sys.platform == "linux":
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ConfigError("no display to open a window on (DISPLAY, WAYLAND_DISPLAY)")
        os.environ.setdefault("PYWEBVIEW_GUI", "qt")  # the extra brings Qt; not GTK first
    path = geometry_file()
    geometry = Geometry.load(path)
    if not geometry.on_screen(webview.screens):  # starts the GUI toolkit, before the server
        geometry.x = geometry.y = None
    server = BackgroundServer(settings)
    try:
        port = server.start()
        window = webview.create_window(
            TITLE,
            window_url(settings.host, port),
            width=geometry.width,
            height=geometry.height,
            x=geometry.x,
            y=geometry.y,
            min_size=MIN_SIZE,
            text_select=True,  # answers are there to be copied
        )
        if window is None:  # only when an `initialized` handler declines, and we have none
            raise ConfigError("no window could be opened")

        def resized(width: int, height: int) -> None:
            geometry.width, geometry.height = width, height

        def moved(x: int, y: int) -> None:
            geometry.x, geometry.y = x, y

        def stop(sig: int) -> None:
            server.handle_exit(sig)
            window.destroy()

        window.events.resized += resized
        window.events.moved += moved
        with signals_call(stop):
            try:
                webview.start(
                    menu=[Menu(TITLE, [MenuAction("Quit", window.destroy)])],
                    # Kept, so the page's preferences (localStorage) outlive the window.
                    private_mode=False,
                    storage_path=str(settings.data_dir / "webview"),
                )
            except WebViewException as exc:  # no GUI toolkit that pywebview can use
                raise ConfigError(f"no window could be opened: {exc}") from None
        geometry.save(path)
    finally:
        server.stop()
