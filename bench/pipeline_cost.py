"""What one request costs the server's own code (HTTP, translation, preparation, event
rendering), with the engine taken out: the app in-process on the test suite's fake engine,
timed by CPU time over many requests. Compares two checkouts in alternating rounds.

    python -m bench.pipeline_cost --baseline 829ca4a [--requests 2000] [--rounds 5]
    python -m bench.pipeline_cost --baseline 829ca4a --callgrind   # instructions, exact
    python -m bench.pipeline_cost --callgrind --dialects   # messages, /api/chat vs chat

Each measurement runs in a fresh interpreter whose `hearth` (and `tests`) come from the
checkout measured. The engine's own work is a few microseconds per event in the fake, the
same in both checkouts, so the difference is the code between HTTP and the engine."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the measured checkout: N requests of each kind, CPU seconds per request.
PROBE = r"""
import asyncio, json, sys, tempfile, time
from pathlib import Path
import httpx
from hearth.api.app import create_app
from hearth.settings import load_settings
from tests.fakes import FakeEngine
from tests.ggufs import write_tiny_gguf

N = int(sys.argv[1])
ONLY = sys.argv[2].split(",") if len(sys.argv) > 2 else None
WARM = int(sys.argv[3]) if len(sys.argv) > 3 else 50
tmp = Path(tempfile.mkdtemp())
write_tiny_gguf(tmp / "models" / "fake-model.gguf")
(tmp / "none.toml").touch()
settings = load_settings(
    {"models_dir": tmp / "models", "config": tmp / "none.toml", "data_dir": tmp / "data"},
    environ={},
)
app = create_app(settings, factory=lambda e: FakeEngine(e, parallel=settings.parallel))
CASES = {
    "completion": ("/v1/completions", {"prompt": "one two three four five", "max_tokens": 1}),
    "completion stream": (
        "/v1/completions",
        {"prompt": "one two three four five", "max_tokens": 1, "stream": True},
    ),
    "chat": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
    ),
    "chat stream": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "stream": True},
    ),
    "chat stream 16 tokens": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": True},
    ),
    "messages stream 16 tokens": (
        "/v1/messages",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": True},
    ),
    "responses stream 16 tokens": (
        "/v1/responses",
        {"input": "hi", "max_output_tokens": 16, "stream": True, "store": False},
    ),
    "ollama chat stream 16 tokens": (
        "/api/chat",
        {"messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 16}},
    ),
}

async def main():
    out = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for name, (route, body) in CASES.items():
                if ONLY is not None and name not in ONLY:
                    continue
                body = {"model": "fake-model", **body}
                for _ in range(WARM):  # warm up (model load, caches)
                    (await c.post(route, json=body)).raise_for_status()
                t = time.process_time()
                for _ in range(N):
                    (await c.post(route, json=body)).raise_for_status()
                out[name] = (time.process_time() - t) / N
    print(json.dumps(out))

asyncio.run(main())
"""


# Cases both checkouts have (the baseline may predate /v1/messages).
COMMON = "completion,completion stream,chat,chat stream,chat stream 16 tokens"


def measure(tree: Path, requests: int) -> dict[str, float]:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(requests), COMMON],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def instructions(tree: Path, case: str, requests: int) -> int:
    """Instructions the whole probe ran under callgrind (deterministic for the same code and
    inputs, whatever else the machine does; hash seeds fixed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"}
        probe = [sys.executable, "-c", PROBE, str(requests), case, "10"]
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *probe],
            cwd=tree,
            env=env,
            check=True,
            capture_output=True,
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def per_request(tree: Path, case: str) -> float:
    """Instructions per request: two runs differing only in the request count, so start-up
    and warm-up cancel out."""
    return (instructions(tree, case, 120) - instructions(tree, case, 20)) / 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", default="HEAD~1")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true", help="count instructions instead")
    ap.add_argument(
        "--dialects",
        action="store_true",
        help="with --callgrind: /v1/messages and /api/chat against chat completions, here",
    )
    args = ap.parse_args()
    if args.dialects:
        chat = per_request(ROOT, "chat stream 16 tokens")
        print("| case | chat completions | route | route's | ratio |\n|---|---|---|---|---|")
        for route, case in [
            ("/v1/messages", "messages stream 16 tokens"),
            ("/api/chat", "ollama chat stream 16 tokens"),
            ("/v1/responses", "responses stream 16 tokens"),
        ]:
            cost = per_request(ROOT, case)
            print(
                f"| streamed, 16 tokens | {chat / 1e6:.3f} M | {route} | {cost / 1e6:.3f} M | "
                f"{cost / chat:.3f}x |"
            )
        return
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.baseline], cwd=ROOT, check=True
        )
        try:
            if args.callgrind:
                cases = ["completion", "completion stream", "chat stream 16 tokens"]
                print(f"| case | {args.baseline} instructions/request | now | ratio |")
                print("|---|---|---|---|")
                for case in cases:
                    a, b = per_request(tree, case), per_request(ROOT, case)
                    print(f"| {case} | {a / 1e6:.3f} M | {b / 1e6:.3f} M | {b / a:.3f}x |")
                return
            runs: dict[str, list[dict[str, float]]] = {"baseline": [], "now": []}
            for rnd in range(args.rounds):
                order = [("baseline", tree), ("now", ROOT)]
                for name, where in order if rnd % 2 == 0 else order[::-1]:
                    runs[name].append(measure(where, args.requests))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    print(f"| case | {args.baseline} CPU/request | now CPU/request | ratio |")
    print("|---|---|---|---|")
    for case in runs["now"][0]:
        a = statistics.median(r[case] for r in runs["baseline"])
        b = statistics.median(r[case] for r in runs["now"])
        print(f"| {case} | {a * 1e6:.0f} µs | {b * 1e6:.0f} µs | {b / a:.3f}x |")


if __name__ == "__main__":
    main()
