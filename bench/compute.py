"""Two Hearth settings side by side: engine isolation (process vs thread), and what other
compute in the same server (embeddings, a second model) costs a chat stream.

    python -m bench.run --suite isolation   # process vs thread: streams and model load time
    python -m bench.run --suite compute     # fresh vs after embeddings / a second model

Every figure is a median of alternating rounds on servers started in the same run."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import peers as P
from bench.client import RequestResult, gather_streams, percentile, summarise
from bench.workloads import WORDS

SECOND = "second"  # a copy of the starter under another id: the second model


def story_jobs(n: int, max_tokens: int, rnd: int) -> list[tuple[list[dict[str, str]], int]]:
    topics = [WORDS[(rnd * 8 + i) % len(WORDS)] for i in range(n)]
    return [
        ([{"role": "user", "content": f"Write a long story about a {t}."}], max_tokens)
        for t in topics
    ]


def streams(url: str, model: str, n: int, rnd: int, extra: dict[str, Any]) -> list[RequestResult]:
    return asyncio.run(gather_streams(url, model, story_jobs(n, 128, rnd), extra))


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(v: float | None, unit: str = "") -> str:
    if v is None or v != v:
        return "-"
    return f"{v * 1000:.0f} ms" if unit == "ms" else f"{v:.1f}"


def embed(url: str, model: str, texts: list[str]) -> float:
    """One embeddings request; its wall time in seconds."""
    t = time.perf_counter()
    r = httpx.post(f"{url}/v1/embeddings", json={"model": model, "input": texts}, timeout=300)
    r.raise_for_status()
    return time.perf_counter() - t


def chat_once(url: str, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300).raise_for_status()


def load_time(url: str, model: str) -> float:
    httpx.post(f"{url}/api/unload", json={"model": model}, timeout=60).raise_for_status()
    t = time.perf_counter()
    httpx.post(f"{url}/api/load", json={"model": model}, timeout=300).raise_for_status()
    return time.perf_counter() - t


@dataclass
class Pair:
    """Streamed tokens/s (and TTFT) of two servers measured in alternating rounds."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    ttft_a: list[float] = field(default_factory=list)
    ttft_b: list[float] = field(default_factory=list)

    def run(
        self, a: P.Peer, b: P.Peer, n: int, rounds: int, extra: dict[str, Any], repeat: int = 1
    ) -> None:
        """`repeat` samples per server per round: one stream alone varies by +-10 % on a
        small VM, so a c=1 median needs more of them than a round gives."""
        for rnd in range(rounds):
            order = [(a, self.a, self.ttft_a), (b, self.b, self.ttft_b)]
            for peer, out, ttft in order if rnd % 2 == 0 else order[::-1]:
                for _ in range(repeat):
                    s = summarise(streams(peer.url, peer.model, n, rnd, extra))
                    out.append(s.tok_s)
                    if s.ttft_p50 is not None:
                        ttft.append(s.ttft_p50)

    def row(self, label: str) -> str:
        ratio = med(self.b) / med(self.a)
        return (
            f"| {label} | {fmt(med(self.a))} | {fmt(med(self.b))} | {ratio:.3f}x | "
            f"{fmt(med(self.ttft_a), 'ms')} | {fmt(med(self.ttft_b), 'ms')} |"
        )


HEADER = (
    "| case | {a} tok/s | {b} tok/s | ratio | {a} TTFT p50 | {b} TTFT p50 |\n"
    "|---|---|---|---|---|---|"
)


def isolation(model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any]) -> str:
    """`--engine-isolation process` against `thread`: streams at 1 and 8, and load time."""
    servers = [
        P.hearth(model, threads, 8, 4096, logs, "--engine-isolation", iso, name=f"hearth {iso}")
        for iso in ("thread", "process")
    ]
    thread, process = servers
    lines = [HEADER.format(a="thread", b="process")]
    loads: dict[str, list[float]] = {"thread": [], "process": []}
    try:
        for s in servers:
            s.start()
        for n in (1, 8):
            pair = Pair()
            pair.run(thread, process, n, rounds, extra, repeat=4 if n == 1 else 1)
            lines.append(pair.row(f"stream c={n}, 128 tok"))
            print(lines[-1], flush=True)
        for rnd in range(rounds):
            for s in servers if rnd % 2 == 0 else servers[::-1]:
                loads[s.name.split()[1]].append(load_time(s.url, s.model))
    finally:
        for s in servers:
            s.stop()
    lt, lp = med(loads["thread"]), med(loads["process"])
    lines.append(
        f"\nModel load (`POST /api/load` after an unload, median of {rounds}): thread "
        f"{lt * 1000:.0f} ms, process {lp * 1000:.0f} ms ({(lp - lt) * 1000:+.0f} ms)."
    )
    lines.append(asyncio.run(engines_alone(model, threads, rounds)))
    return "\n".join(lines)


async def engines_alone(model: Path, threads: int, rounds: int) -> str:
    """The same comparison without HTTP: generations driven through each engine directly."""
    from hearth.engine.base import GenerationRequest, SamplingParams
    from hearth.engine.llamacpp.common import EngineOptions
    from hearth.engine.llamacpp.engine import LlamaCppEngine
    from hearth.engine.llamacpp.process import ProcessEngine

    opts = EngineOptions(parallel=8, threads=threads, ctx_size=4096)
    engines = {
        "thread": LlamaCppEngine("m", model, opts),
        "process": ProcessEngine("m", model, opts),
    }
    prompt = engines["thread"].tokenize("Write a long story about a river.")

    async def run(name: str, n: int) -> float:
        async def one(i: int) -> None:
            req = GenerationRequest(
                prompt=[*prompt, 10 + i],
                sampling=SamplingParams(temperature=0.0),
                max_tokens=128,
                ignore_eos=True,
            )
            async for _ in engines[name].generate(req):
                pass

        t = time.perf_counter()
        await asyncio.gather(*[one(i) for i in range(n)])
        return n * 128 / (time.perf_counter() - t)

    out: dict[tuple[str, int], list[float]] = {(name, n): [] for name in engines for n in (1, 8)}
    try:
        for rnd in range(rounds):
            for name in ("thread", "process") if rnd % 2 == 0 else ("process", "thread"):
                for n in (1, 8):
                    out[name, n].append(await run(name, n))
    finally:
        for engine in engines.values():
            engine.close()
    ratios = ", ".join(
        f"c={n} {med(out['process', n]) / med(out['thread', n]):.3f}x" for n in (1, 8)
    )
    return f"\nThe engines alone, no HTTP (same generations, process/thread): {ratios}."


def compute(model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any]) -> str:
    """A fresh server against one that has made embeddings or served a second model."""
    out: list[str] = []
    texts = [f"Short text number {i} about a {WORDS[i % 50]}." for i in range(32)]
    for iso in ("process", "thread"):
        models = logs / f"models-{iso}"
        models.mkdir(exist_ok=True)
        shutil.copyfile(model, models / f"{SECOND}.gguf")
        common = ("--engine-isolation", iso)
        fresh = P.hearth(model, threads, 8, 4096, logs, *common, name=f"fresh {iso}")
        used = P.hearth(model, threads, 8, 4096, logs, *common, name=f"used {iso}")
        used.cmd[used.cmd.index("--models-dir") + 1] = str(models)
        out.append(f"\n`--engine-isolation {iso}`, `--parallel 8`:\n")
        out.append(HEADER.format(a="fresh", b="used"))
        try:
            fresh.start()
            used.start()
            # (what the used server does first, embeddings requests, a chat to the 2nd model)
            steps = [
                ("after 1 embeddings request", 1, False),
                ("after 20 embeddings requests", 19, False),
                ("after a request to a 2nd model", 0, True),
            ]
            for label, n_embed, second in steps:
                for _ in range(n_embed):
                    embed(used.url, used.model, ["hello world"])
                if second:
                    chat_once(used.url, SECOND)
                for n in (1, 8):
                    pair = Pair()
                    pair.run(fresh, used, n, rounds, extra)
                    out.append(pair.row(f"{label}, c={n}"))
                    print(out[-1], flush=True)
            out.append(both_busy(used, rounds, extra))
            out.append(embeddings_while_streaming(fresh, texts, rounds, extra))
        finally:
            fresh.stop()
            used.stop()
    return "\n".join(out)


def both_busy(server: P.Peer, rounds: int, extra: dict[str, Any]) -> str:
    """4 streams on each of two models at once, against 4 streams on one model alone."""
    alone: list[float] = []
    together: list[float] = []

    async def two(rnd: int) -> float:
        a, b = await asyncio.gather(
            gather_streams(server.url, server.model, story_jobs(4, 128, rnd), extra),
            gather_streams(server.url, SECOND, story_jobs(4, 128, rnd), extra),
        )
        return summarise([*a, *b]).tok_s

    for rnd in range(rounds):
        together.append(asyncio.run(two(rnd)))
        alone.append(summarise(streams(server.url, server.model, 4, rnd, extra)).tok_s)
    ratio = med(together) / med(alone)
    return (
        f"\nBoth models busy (4 streams each): {med(together):.1f} tok/s together against "
        f"{med(alone):.1f} for one model alone (4 streams): {ratio:.3f}x."
    )


def embeddings_while_streaming(
    server: P.Peer, texts: list[str], rounds: int, extra: dict[str, Any]
) -> str:
    """4 chat streams with and without one embeddings request of 32 texts in the middle."""
    quiet: list[float] = []
    busy: list[float] = []
    embed_s: list[float] = []

    async def with_embeddings(rnd: int) -> list[RequestResult]:
        chats = asyncio.create_task(
            gather_streams(server.url, server.model, story_jobs(4, 128, rnd), extra)
        )
        await asyncio.sleep(0.3)  # the streams are generating
        embed_s.append(await asyncio.to_thread(embed, server.url, server.model, texts))
        return await chats

    for rnd in range(rounds):
        runs = [("quiet", None), ("busy", with_embeddings)]
        for kind, fn in runs if rnd % 2 == 0 else runs[::-1]:
            if fn is None:
                results = streams(server.url, server.model, 4, rnd, extra)
            else:
                results = asyncio.run(fn(rnd))
            itls = [x for r in results if r.error is None for x in r.itls]
            p95 = percentile(itls, 0.95)
            (quiet if kind == "quiet" else busy).append(p95 or float("nan"))
    e = med(embed_s)
    return (
        f"\nEmbeddings of 32 short texts while 4 chats stream: chat ITL p95 "
        f"{med(busy) * 1000:.1f} ms against {med(quiet) * 1000:.1f} ms without "
        f"({med(busy) / med(quiet):.2f}x); the embeddings request took {e * 1000:.0f} ms "
        f"({32 / e:.0f} texts/s)."
    )
