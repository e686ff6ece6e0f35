"""Streaming through a Hearth front to an upstream against streaming to that upstream
directly: what forwarding a model (`--upstream NAME=URL`, backend "openai") costs.

    python -m bench.run --suite upstream --rounds 5

The upstream is a Hearth serving the starter model (`--parallel 8`); the front is a second
Hearth with no model of its own, serving `remote` from it. Both on 127.0.0.1, each with a data
directory, models directory and empty config file of its own. Streamed chat, 128 tokens, at
concurrency 1 and 8; both sides get the same prompts in a round, rounds alternate which side
goes first; medians over rounds. Also the front process's own CPU time while it streams (per
token, and as a share of one core). Targets (the issue): front/direct tokens/s >= 0.97x, front
TTFT p50 at most 10 ms above direct's."""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import peers as P
from bench.client import Summary, gather_streams, summarise
from bench.compute import med, story_jobs
from bench.overhead import cpu_seconds

MAX_TOKENS = 128
REMOTE = "remote"  # the front's name for the upstream's model
MIN_RATIO = 0.97  # front tokens/s against direct's
MAX_TTFT_MS = 10.0  # front TTFT p50 above direct's


@dataclass
class Side:
    """One way to the model, its samples over rounds."""

    label: str
    peer: P.Peer
    tok_s: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)


def run_once(peer: P.Peer, n: int, max_tokens: int, rnd: int, extra: dict[str, Any]) -> Summary:
    """n streams at once of round rnd's prompts; any error stops the suite."""
    jobs = story_jobs(n, max_tokens, rnd)
    results = asyncio.run(gather_streams(peer.url, peer.model, jobs, extra))
    failed = [r.error for r in results if r.error]
    if failed:
        raise RuntimeError(f"{peer.name}: {len(failed)} of {n} streams failed, e.g. {failed[0]}")
    return summarise(results)


def measure(
    direct: P.Peer, front: P.Peer, n: int, rounds: int, extra: dict[str, Any]
) -> tuple[str, str]:
    """Alternating rounds of n streams through each side: the table row, a line of rounds."""
    sides = [Side("direct", direct), Side("front", front)]
    short: list[str] = []
    cpu_per_token: list[float] = []  # the front process's own CPU, while the front streams
    cpu_share: list[float] = []  # the same over the run's wall time: cores it kept busy
    for rnd in range(rounds):
        # The round's prompts once, untimed: both sides then find them in the upstream's KV
        # cache alike (else whichever went second would skip the prompt read the first paid).
        run_once(direct, n, 1, rnd, extra)
        for side in sides if rnd % 2 == 0 else sides[::-1]:
            pid = front.process.pid if front.process else None
            spent = cpu_seconds(pid) if pid is not None else 0.0
            s = run_once(side.peer, n, MAX_TOKENS, rnd, extra)
            if pid is not None and side.peer is front:
                spent = cpu_seconds(pid) - spent
                cpu_per_token.append(spent / max(1, s.tokens))
                cpu_share.append(spent / s.wall)
            if s.tokens != n * MAX_TOKENS:
                short.append(f"{side.label} r{rnd}: {s.tokens} of {n * MAX_TOKENS} tokens")
            side.tok_s.append(s.tok_s)
            side.ttft.append(s.ttft_p50 if s.ttft_p50 is not None else float("nan"))
            print(
                f"  c={n} r{rnd} {side.label:<6} {s.tok_s:7.1f} tok/s  ttft50 {ms(s.ttft_p50)}",
                flush=True,
            )
    d, f = sides
    ratio = med(f.tok_s) / med(d.tok_s)
    diff = (med(f.ttft) - med(d.ttft)) * 1000
    verdict = "pass" if ratio >= MIN_RATIO and diff <= MAX_TTFT_MS else "FAIL"
    row = (
        f"| stream c={n}, {MAX_TOKENS} tok | {med(d.tok_s):.1f} | {med(f.tok_s):.1f} | "
        f"{ratio:.3f}x | {ms(med(d.ttft))} | {ms(med(f.ttft))} | {diff:+.1f} ms | {verdict} |"
    )
    spread = (
        f"- c={n}, rounds: direct {listed(d.tok_s)} tok/s, TTFT {listed(d.ttft, 1000)} ms; "
        f"front {listed(f.tok_s)} tok/s, TTFT {listed(f.ttft, 1000)} ms."
    )
    if cpu_per_token:
        spread += (
            f" Front process CPU while it streams: {med(cpu_per_token) * 1000:.2f} ms per token, "
            f"{med(cpu_share):.0%} of one core."
        )
    if short:
        spread += " Short streams: " + "; ".join(short) + "."
    return row, spread


def ms(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v * 1000:.1f} ms"


def listed(values: list[float], scale: float = 1.0) -> str:
    return ", ".join(f"{v * scale:.1f}" for v in values)


@functools.cache  # asked again after this process pinned itself: the same answer
def pinned() -> tuple[list[str], list[str]] | None:
    """With BENCH_UPSTREAM_PIN=1 on a machine of 2+ cores: the upstream (and its engine
    child) on the first half of the cores, the front and this client on the rest, as when the
    upstream runs on machines of its own; else None (every process on every core)."""
    cores = sorted(os.sched_getaffinity(0))
    if os.environ.get("BENCH_UPSTREAM_PIN") != "1" or len(cores) < 2:
        return None
    half = len(cores) // 2
    return [str(c) for c in cores[:half]], [str(c) for c in cores[half:]]


def upstream(model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any]) -> str:
    """The front (model `remote`) against the upstream itself (the starter's id), streams at
    1 and 8."""
    layout = pinned()
    if layout is not None:
        threads = min(threads, len(layout[0]))
    (logs / "upstream.toml").touch()
    direct = P.hearth(
        model,
        threads,
        8,
        4096,
        logs,
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(logs / "upstream-data"),
        name="upstream",
    )
    direct.env["HEARTH_CONFIG"] = str(logs / "upstream.toml")
    direct.env["HEARTH_DATA_DIR"] = str(logs / "upstream-data")
    front = P.hearth_front({REMOTE: direct.url}, logs, name="front")
    if layout is not None:
        up_cores, front_cores = layout
        direct.cmd = ["taskset", "-c", ",".join(up_cores), *direct.cmd]
        front.cmd = ["taskset", "-c", ",".join(front_cores), *front.cmd]
        os.sched_setaffinity(0, {int(c) for c in front_cores})  # the client beside the front
    rows: list[str] = []
    spreads: list[str] = []
    try:
        direct.start()
        front.start()
        # Every sequence once, and the front's model and connections up, before any round.
        for peer in (direct, front):
            run_once(peer, 8, 16, 0, extra)
        for n in (1, 8):
            row, spread = measure(direct, front, n, rounds, extra)
            rows.append(row)
            spreads.append(spread)
            print(row, flush=True)
    finally:
        front.stop()
        direct.stop()
    return "\n".join(
        [
            (
                f"Pinned (BENCH_UPSTREAM_PIN=1): the upstream on cores {','.join(layout[0])} "
                f"with {threads} thread(s), the front and the client on cores "
                f"{','.join(layout[1])}, as when the upstream runs on machines of its own."
                if layout is not None
                else "Not pinned: the upstream's decode threads, the front and the client "
                "share every core (the worst case for the front)."
            ),
            "",
            "Front: `hearth serve --upstream remote=http://127.0.0.1:P1` (no model of its own); "
            "direct: the upstream Hearth on P1 (`--parallel 8`). Each side has a data "
            "directory and an empty config file (`HEARTH_CONFIG`) of its own. Each round sends "
            "its prompts to the upstream once first (1 token, untimed), so both sides find "
            "them in its KV cache alike. Targets: front/direct tokens/s >= "
            f"{MIN_RATIO}x, front TTFT p50 at most +{MAX_TTFT_MS:.0f} ms.",
            "",
            "| case | direct tok/s | front tok/s | ratio | direct TTFT p50 | front TTFT p50 | "
            "TTFT difference | target |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *spreads,
        ]
    )
