"""Hearth against an earlier commit of itself, side by side: what a request costs beyond the
model's own compute (the conversation pipeline's overhead), and streamed throughput.

    python -m bench.run --suite overhead --baseline HEAD~1

The baseline runs from a git worktree of that commit with the same Python environment. Per
request overhead is a 1-token completion of a ~20-token prompt (each prompt different, so no
prefix is reused), at concurrency 1 and 16: its TTFT and total latency, p50. Throughput is
streamed chat at concurrency 8, 128 tokens. Rounds alternate the servers; medians shown."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import peers as P
from bench.client import percentile
from bench.compute import HEADER, Pair, med
from bench.workloads import WORDS

ROOT = Path(__file__).resolve().parent.parent
WORD_LIST = WORDS


@dataclass
class Timed:
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)


async def one_token(
    client: httpx.AsyncClient, url: str, model: str, prompt: str
) -> tuple[float, float]:
    """(TTFT, total) of one streamed 1-token completion."""
    body = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "stream": True}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if first is None and line.startswith("data: {") and '"text":""' not in line:
                first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - start, end - start


def prompts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORD_LIST) for _ in range(16)) for _ in range(count)]


async def burst(url: str, model: str, concurrency: int, batches: int, seed: int) -> Timed:
    """`batches` times, `concurrency` requests at once (concurrency 1: one after another)."""
    out = Timed()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300), limits=limits) as client:
        await one_token(client, url, model, "warm up")
        for b in range(batches):
            texts = prompts(concurrency, seed * 1000 + b)
            results = await asyncio.gather(*[one_token(client, url, model, t) for t in texts])
            for ttft, total in results:
                out.ttft.append(ttft)
                out.total.append(total)
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of one process's threads (its children not counted), in nanoseconds'
    precision: the sum of every thread's schedstat (/proc/PID/stat counts in 10 ms ticks,
    too coarse for a few milliseconds a request)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended since the listing
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _short(rev: str) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def overhead(
    model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any], baseline: str
) -> str:
    rev = subprocess.run(
        ["git", "rev-parse", "--short", baseline],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = logs / f"baseline-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True)
    # Distinct names even when both are one commit (an A/A run measures the bench itself).
    before = P.hearth(model, threads, 16, 2048, logs, name=f"hearth baseline {rev}")
    before.cwd = tree
    now = P.hearth(model, threads, 16, 2048, logs, name=f"hearth {head}")
    now.cwd = ROOT
    servers = [before, now]
    lines = [
        f"Baseline `{rev}` (worktree) against `{head}`; 16 sequences of 2048 tokens each.\n",
        f"| case | {rev} TTFT p50 | {head} TTFT p50 | ratio | {rev} total p50 | "
        f"{head} total p50 | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    try:
        for s in servers:
            s.start()
        cpu_rows = []
        for concurrency, batches in ((1, 40), (16, 6)):
            got: dict[str, list[tuple[float, float]]] = {before.name: [], now.name: []}
            cpu: dict[str, list[float]] = {before.name: [], now.name: []}
            for rnd in range(rounds):
                for s in servers if rnd % 2 == 0 else servers[::-1]:
                    assert s.process is not None
                    spent = cpu_seconds(s.process.pid)
                    t = asyncio.run(burst(s.url, s.model, concurrency, batches, rnd))
                    spent = cpu_seconds(s.process.pid) - spent
                    cpu[s.name].append(spent / (concurrency * batches + 1))  # + the warm-up
                    p50 = (percentile(t.ttft, 0.5) or 0.0, percentile(t.total, 0.5) or 0.0)
                    got[s.name].append(p50)
            ca, cb = med(cpu[before.name]), med(cpu[now.name])
            cpu_rows.append(
                f"| 1-token completion, c={concurrency} | {ca * 1000:.2f} ms | "
                f"{cb * 1000:.2f} ms | {cb / ca:.3f}x |"
            )
            a = [med([x[k] for x in got[before.name]]) for k in (0, 1)]
            b = [med([x[k] for x in got[now.name]]) for k in (0, 1)]
            lines.append(
                f"| 1-token completion, c={concurrency} | {a[0] * 1000:.1f} ms | "
                f"{b[0] * 1000:.1f} ms | {b[0] / a[0]:.3f}x | {a[1] * 1000:.1f} ms | "
                f"{b[1] * 1000:.1f} ms | {b[1] / a[1]:.3f}x |"
            )
            print(lines[-1], flush=True)
        lines.append(
            "\nCPU time of the server process itself (HTTP, pipeline, IPC; not the engine "
            "child) per request, from /proc: it does not wait on the other cores, so it is "
            "far steadier than latency on a shared machine.\n"
        )
        lines.append(f"| case | {rev} server CPU | {head} server CPU | ratio |")
        lines.append("|---|---|---|---|")
        lines += cpu_rows
        print("\n".join(cpu_rows), flush=True)
        pair = Pair()
        pair.run(before, now, 8, rounds, extra)
        lines.append("\n" + HEADER.format(a=rev, b=head))
        lines.append(pair.row("stream c=8, 128 tok"))
        print(lines[-1], flush=True)
    finally:
        for s in servers:
            s.stop()
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    return "\n".join(lines)
