"""The `hearth` command as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import STARTER_ID, start_server
from tests.ggufs import corrupt, write_tiny_gguf

pytestmark = pytest.mark.e2e

HEAVY = {"llama_cpp", "fastapi", "uvicorn", "numpy", "starlette"}


def test_help_is_instant_and_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['hearth', '--help']\n"
        "from hearth.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "serve" in out.stdout
    assert out.stdout.strip().endswith("[]")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_and_stops_cleanly(server_factory, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    server = server_factory()
    deadline = time.monotonic() + 10
    while (
        "Hearth listening on http://127.0.0.1:" not in server.output and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert server.url in server.output
    assert any(
        line.split() == [STARTER_ID, "loaded", "at", "start"] for line in server.output.splitlines()
    ), server.output
    server.process.send_signal(sig)
    # uvicorn re-raises the signal after a graceful shutdown, as a terminated process should.
    assert server.process.wait(timeout=20) in (0, -sig, 128 + sig), server.output
    assert "Hearth stopped: models unloaded" in server.output


def test_serve_without_model_lists_the_models_it_serves(starter_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "models"
    root.mkdir()
    (root / starter_model.name).symlink_to(starter_model)
    corrupt(write_tiny_gguf(root / "broken.gguf"), "tensor_past_end")
    server = start_server(tmp_path, None, models_dir=root)
    try:
        lines = server.output.splitlines()
        assert f"Hearth listening on {server.url}" in lines
        assert f"Models in {root}:" in lines
        rows = {ln.split()[0]: ln.split(None, 1)[1] for ln in lines if ln.startswith("  ")}
        assert rows[STARTER_ID] == "available, loads on first use"
        assert rows["broken"].startswith("invalid: ")
        assert set(rows) == {STARTER_ID, "broken"}
    finally:
        server.stop()


def test_models_command_lists_metadata(starter_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / starter_model.name).symlink_to(starter_model)
    out = subprocess.run(
        [sys.executable, "-m", "hearth", "models", "--models-dir", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert STARTER_ID in out.stdout
    assert "Q4_1" in out.stdout and "llama" in out.stdout
