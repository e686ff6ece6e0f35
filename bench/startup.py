"""Spawn to ready: how long a desktop app waits for Hearth (issue 15's start-up figure).

    python -m bench.startup [--runs 5] [--binary PATH]

Each run starts a fresh process with `--port 0` on its own data directory and an empty config
file, and times from spawn to its ready line on stdout (`hearth serve --sidecar` and the
`hearth-server` binary print the same one), then stops it with SIGTERM. Without and with
`--model` (ready then means loaded). Medians of the runs; the binary comes from `make binary`
(dist/hearth-server/hearth-server) unless given. The files are in the OS's cache after the
first run, as on a desktop that started the app before."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hearth.models.packaged import PACKAGED, ensure_packaged
from hearth.settings import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 3.0  # the binary's ready line without preload (the issue)


def once(cmd: list[str], model: str | None) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="hearth-startup-"))
    try:
        (tmp / "none.toml").touch()
        args = [*cmd, "--port", "0", "--data-dir", str(tmp / "data")]
        args += ["--models-dir", str(default_models_dir())]
        if model:
            args += ["--model", model]
        env = {**os.environ, "HEARTH_CONFIG": str(tmp / "none.toml")}
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        took = time.perf_counter() - started
        assert line["event"] == "ready", line
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        return took
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--binary", type=Path, default=ROOT / "dist" / "hearth-server" / "hearth-server"
    )
    args = ap.parse_args()
    starter = ensure_packaged(PACKAGED["smollm2"], default_models_dir()).stem.lower()
    sides: list[tuple[str, list[str]]] = [
        ("hearth serve --sidecar", [sys.executable, "-m", "hearth", "serve", "--sidecar"])
    ]
    if args.binary.exists():
        sides.insert(0, ("hearth-server (binary)", [str(args.binary)]))
    else:
        print(f"no binary at {args.binary}: run `make binary` first", file=sys.stderr)
    print("| process | preload | median s | runs (s) |")
    print("|---|---|---|---|")
    for name, cmd in sides:
        for model in (None, starter):
            once(cmd, model)  # warm the OS's file cache; not counted
            runs = [once(cmd, model) for _ in range(args.runs)]
            shown = ", ".join(f"{r:.2f}" for r in runs)
            label = "--model starter" if model else "none"
            print(f"| {name} | {label} | {statistics.median(runs):.2f} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
