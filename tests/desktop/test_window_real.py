"""`hearth desktop` under Xvfb: the real command as a subprocess, its server in it and Qt
WebEngine drawing the web UI in a window. A screenshot shows the UI; closing the window (the
WM_DELETE_WINDOW a window manager sends for the close button) or its Quit menu stops the server
and the process; the size and position come back at the next start. The desktop extra is too big
for `dev`: scripts/test-deps.sh installs it for the tests."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from hearth.desktop import MIN_SIZE, Geometry
from tests.e2e.conftest import STARTER_ID, RunningServer, free_port, hearth, wait_healthy

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"  # gitignored
SCREEN = (1600, 1000)

# Run in a child: the screenshot through Qt, which the extra brings (no X tool needed for it),
# and how many colours the window shows (sampled; a blank or black window has one or two).
GRAB = """
import sys
from PySide6.QtWidgets import QApplication
app = QApplication(["grab"])
image = app.primaryScreen().grabWindow(int(sys.argv[2])).toImage()
assert image.save(sys.argv[1]), "could not write the screenshot"
step = 3
colours = {
    image.pixel(x, y) for x in range(0, image.width(), step) for y in range(0, image.height(), step)
}
print(len(colours), image.width(), image.height())
"""


@pytest.fixture(scope="module")
def desktop_extra() -> None:
    """The desktop extra in this venv (scripts/test-deps.sh, run by `make test`, puts it
    there)."""
    check = [sys.executable, "-c", "import webview, PySide6.QtWebEngineWidgets"]
    imported = subprocess.run(check, capture_output=True, text=True)
    if imported.returncode != 0:
        pytest.fail(
            "the desktop extra is missing or broken (scripts/test-deps.sh installs it):\n"
            + imported.stderr[-3000:]
        )


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A virtual X display of its own (Xvfb picks a free number)."""
    for tool in ("Xvfb", "xdotool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/test-deps.sh (`make test`) installs it")
    read, write = os.pipe()
    screen = f"{SCREEN[0]}x{SCREEN[1]}x24"
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as numbers:
        number = numbers.readline().strip()
    if not number:
        xvfb.kill()
        pytest.fail(f"Xvfb did not start (exit {xvfb.wait()})")
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(timeout=10)


def start_desktop(tmp: Path, display: str, *args: str) -> RunningServer:
    """`hearth desktop` on a free port, its config, data and window state under `tmp`."""
    port = free_port()
    log = tmp / f"desktop-{port}.log"
    config = tmp / "absent.toml"
    config.touch()
    env = {
        **os.environ,
        "DISPLAY": display,
        "HEARTH_CONFIG": str(config),
        "XDG_CONFIG_HOME": str(tmp / "config"),  # window.json
        "XDG_DATA_HOME": str(tmp / "share"),
        "QT_QPA_PLATFORM": "xcb",
        # Chromium has no sandbox for root; no GPU under Xvfb.
        "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox --disable-gpu",
    }
    env.pop("HEARTH_API_KEY", None)
    env.pop("WAYLAND_DISPLAY", None)
    cmd = [sys.executable, "-m", "hearth", "desktop", "--port", str(port)]
    cmd += ["--models-dir", str(tmp / "models"), "--data-dir", str(tmp / "data"), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    app = RunningServer(proc, f"http://127.0.0.1:{port}", log)
    wait_healthy(app, timeout=60)
    return app


def wait_for_page(app: RunningServer, timeout: float = 30) -> None:
    """The page has run its scripts: its first API calls are in the request log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = httpx.get(f"{app.url}/api/requests", timeout=5).json()["data"]
        if {"/v1/models", "/v1/conversations"} <= {r["route"] for r in rows}:
            return
        time.sleep(0.2)
    pytest.fail(f"the page made no API calls in {timeout}s:\n{app.output}")


def xdotool(display: str, *args: str) -> str:
    done = subprocess.run(
        ["xdotool", *args], capture_output=True, text=True, timeout=20, env={"DISPLAY": display}
    )
    assert done.returncode == 0, f"xdotool {' '.join(args)}: {done.stderr}"
    return done.stdout


def window_of(display: str) -> int:
    """The id of the visible window titled Hearth (waits for it)."""
    ids = xdotool(display, "search", "--sync", "--onlyvisible", "--name", "^Hearth$").split()
    assert len(ids) == 1, f"windows titled Hearth: {ids}"
    return int(ids[0])


def geometry(display: str, window: int) -> tuple[int, int, int, int]:
    """x, y, width, height as the X server has them."""
    out = xdotool(display, "getwindowgeometry", str(window))
    (x, y), (w, h) = re.findall(r"(-?\d+),(-?\d+)", out)[0], re.findall(r"(\d+)x(\d+)", out)[0]
    return int(x), int(y), int(w), int(h)


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def close_window(display: str, window: int) -> None:
    """What a window manager does for the close button: a WM_DELETE_WINDOW client message
    (there is no window manager under Xvfb, and xdotool's windowclose destroys the window)."""
    x11 = ctypes.CDLL("libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.c_long,
        ctypes.POINTER(_XEvent),
    ]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    conn = x11.XOpenDisplay(display.encode())
    assert conn, f"cannot open {display}"
    event = _XEvent()
    event.xclient.type = 33  # ClientMessage
    event.xclient.window = window
    event.xclient.message_type = x11.XInternAtom(conn, b"WM_PROTOCOLS", 0)
    event.xclient.format = 32
    event.xclient.data[0] = x11.XInternAtom(conn, b"WM_DELETE_WINDOW", 0)
    assert x11.XSendEvent(conn, window, 0, 0, ctypes.byref(event))
    x11.XFlush(conn)
    x11.XCloseDisplay(conn)


def assert_stopped(app: RunningServer, within: float = 10) -> None:
    """The process exits 0 after a clean shutdown, and the port answers no more."""
    try:
        code = app.process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        app.stop()
        pytest.fail(
            f"hearth desktop still running {within}s after its window closed:\n{app.output}"
        )
    assert code == 0, app.output
    assert "Hearth stopped: models unloaded" in app.output, app.output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{app.url}/health", timeout=2)


def test_a_saved_geometry_is_read_back_checked_and_placed_on_a_screen(tmp_path: Path) -> None:
    path = tmp_path / "window.json"
    assert Geometry.load(path) == Geometry()  # none saved yet
    Geometry(900, 600, 120, 90).save(path)
    assert Geometry.load(path) == Geometry(900, 600, 120, 90)
    path.write_text('{"width": 10, "height": "tall", "x": 5}')
    assert Geometry.load(path) == Geometry(width=MIN_SIZE[0])  # too small, not a number, no y
    path.write_text("[1, 2")
    assert Geometry.load(path) == Geometry()
    screen = SimpleNamespace(x=0, y=0, width=1920, height=1080)
    assert Geometry(x=-16, y=-16).on_screen([screen])
    assert not Geometry(x=2500, y=100).on_screen([screen])  # its monitor is gone
    assert Geometry().on_screen([])  # centred


def test_without_the_extra_it_says_how_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "webview"
    missing.mkdir()
    (missing / "__init__.py").write_text("raise ImportError('not installed')\n")
    done = hearth("desktop", PYTHONPATH=str(tmp_path))
    assert done.returncode == 1
    assert "hearth desktop needs the desktop extra: pip install 'hearth[desktop]'" in done.stderr


def test_the_window_shows_the_ui_and_closing_it_stops_the_server(
    desktop_extra: None, display: str, tmp_path: Path, starter_model: Path
) -> None:
    (tmp_path / "models").mkdir()  # the model listed, loaded on first use
    (tmp_path / "models" / starter_model.name).symlink_to(starter_model)
    app = start_desktop(tmp_path, display)
    try:
        wait_for_page(app)
        window = window_of(display)
        time.sleep(1)  # the page has asked for its data; let it paint the answers
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / "desktop.png"
        grab = subprocess.run(
            [sys.executable, "-c", GRAB, str(shot), str(window)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"},
        )
        assert grab.returncode == 0, grab.stderr
        colours, width, height = map(int, grab.stdout.split())
        assert (width, height) == (1200, 800)  # the default size: no window.json yet
        assert colours > 20, f"the window looks blank ({colours} colours): see {shot}"
        assert STARTER_ID in [m["id"] for m in httpx.get(f"{app.url}/v1/models").json()["data"]]

        close_window(display, window)
        assert_stopped(app)
    finally:
        app.stop()
    saved = json.loads((tmp_path / "config" / "hearth" / "window.json").read_text())
    assert (saved["width"], saved["height"]) == (1200, 800)


def test_the_window_comes_back_where_it_was_and_its_quit_menu_stops_the_server(
    desktop_extra: None, display: str, tmp_path: Path
) -> None:
    state = tmp_path / "config" / "hearth" / "window.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"width": 900, "height": 600, "x": 120, "y": 90}))
    app = start_desktop(tmp_path, display)
    try:
        wait_for_page(app)
        window = window_of(display)
        assert geometry(display, window) == (120, 90, 900, 600)
        xdotool(display, "windowmove", "--sync", str(window), "200", "150")
        xdotool(display, "windowsize", "--sync", str(window), "1000", "700")
        # The menu bar's first entry, Hearth; then its first item, Quit.
        xdotool(display, "mousemove", "--window", str(window), "20", "10", "click", "1")
        time.sleep(0.5)
        xdotool(display, "key", "Down", "Return")
        assert_stopped(app)
    finally:
        app.stop()
    assert json.loads(state.read_text()) == {"width": 1000, "height": 700, "x": 200, "y": 150}


def test_sigterm_closes_the_window_and_stops_the_server(
    desktop_extra: None, display: str, tmp_path: Path
) -> None:
    app = start_desktop(tmp_path, display)
    try:
        window_of(display)
        app.process.send_signal(signal.SIGTERM)  # the GUI loop holds the main thread
        assert_stopped(app)
    finally:
        app.stop()
