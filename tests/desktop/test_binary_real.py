"""The sidecar contract on the built `hearth-server` binary: the tests of
tests/e2e/test_sidecar_real.py, run on the binary (`make test-desktop`). It is built once per
version of its inputs (Hearth's files, the build script, the dependencies) into a cache outside
the checkout; where PyInstaller cannot be installed the tests skip, saying so."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_sidecar_real import (  # collected here again, on the binary
    model_dir,
    test_a_killed_parent_takes_it_down,
    test_ready_then_chat_then_sigterm_mid_stream,
    test_shutdown_over_http_needs_the_key_and_its_port_is_taken,
    test_start_up_errors_are_error_lines,
    test_stdin_closed_stops_it,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
__all__ = [
    "model_dir",
    "test_a_killed_parent_takes_it_down",
    "test_ready_then_chat_then_sigterm_mid_stream",
    "test_shutdown_over_http_needs_the_key_and_its_port_is_taken",
    "test_start_up_errors_are_error_lines",
    "test_stdin_closed_stops_it",
]


def inputs_key() -> str:
    """What the binary is built from: Hearth's files, the build script, the dependencies."""
    digest = hashlib.sha256(sys.version.encode())
    files = [ROOT / "pyproject.toml", ROOT / "scripts" / "build-binary.sh"]
    files += sorted(
        p for p in (ROOT / "hearth").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def binary() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "binary"
    key = inputs_key()
    built = cache / key / "hearth-server" / "hearth-server"
    if built.exists():
        return built
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "pyinstaller>=6.10"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"PyInstaller cannot be installed here, so no binary: {probe.stderr[-500:]}")
    partial = cache / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-binary.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "DIST": str(partial)},
        timeout=900,
    )
    assert out.returncode == 0, f"make binary failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    for old in cache.iterdir():  # one build kept: the binary is ~100s of MB
        if old.name != partial.name:
            shutil.rmtree(old, ignore_errors=True)
    partial.rename(cache / key)
    return built


@pytest.fixture
def sidecar_cmd(binary: Path) -> list[str]:
    return [str(binary)]


def test_the_binary_is_one_folder_with_its_launcher(binary: Path) -> None:
    folder = binary.parent
    assert (folder / "_internal").is_dir(), "one-folder mode: nothing unpacked at start"
    launchers = list(folder.parent.glob("hearth-server-*-*"))
    scripts = [p for p in launchers if not p.name.endswith(".tar.gz")]
    assert len(scripts) == 1 and os.access(scripts[0], os.X_OK), launchers
    assert any(p.name.endswith(".tar.gz") for p in launchers)
    out = subprocess.run([str(scripts[0]), "--no-such-flag"], capture_output=True, text=True)
    assert out.returncode == 1 and '"code": "bad_flag"' in out.stdout, out
