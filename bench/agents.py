"""Agent sessions replayed against Hearth and llama.cpp's llama-server, side by side:

    python -m bench.agents --record      # once: a real OpenCode run against Hearth, recorded
    python -m bench.run --suite agents   # the replay (1, 3 and 6 sessions over 4 sequences)

An agent resends its whole, growing history every turn. The first turn of each session is the
recorded first request of a real OpenCode run (its 7.8k-token system prompt and tool list; the
tools folded into the system prompt as OpenCode's JSON, so both servers render the same text
with no tool handling of their own). Turns 2-8 each add what an agent adds: the server's own
64-token answer to the turn before, then a ~300-token tool result. All sessions of a run share
the system prompt, led by a nonce per run so no run finds the last one's cache.

The recording is OpenCode's prompt text, so it is kept in the cache beside the agents
(`~/.cache/hearth/agents/`), not in the repository."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from bench import peers as P
from bench.build import ensure_llama_server
from bench.client import percentile, stream_chat
from bench.compute import med
from bench.workloads import Tokenizer
from hearth.models.gguf_header import read_header

TURNS = 8
ANSWER_TOKENS = 64
RESULT_TOKENS = 300
SESSIONS = (1, 3, 6)  # BENCH_AGENT_SESSIONS=1,3 runs some of them
PARALLEL = 4
CTX = 16384  # per sequence: the recorded prompt and 7 turns of ~360 tokens (past the starter's
# trained 8192: the output's quality is no concern here, both servers run the same context)
PACKAGES = Path(__file__).parents[1] / "tests" / "agents" / "package.json"


def recording() -> Path:
    return Path(platformdirs.user_cache_dir("hearth")) / "agents" / "opencode-first-turn.json"


def record(model: Path, logs: Path) -> Path:
    """Run OpenCode against a Hearth that logs request bodies; keep its first agent request
    (the first with tools: its titler sends none) and stop OpenCode there, since a small
    model may keep the agent looping for many turns."""
    import hashlib

    key = hashlib.sha256(PACKAGES.read_bytes()).hexdigest()[:12]
    agents = Path(platformdirs.user_cache_dir("hearth")) / "agents" / key / "node_modules" / ".bin"
    if not (agents / "opencode").exists():
        raise SystemExit(f"OpenCode is not in {agents}: run scripts/test-deps.sh first")
    server = P.hearth(model, 2, 4, None, logs, "--request-log-bodies")
    server.start()
    first: dict[str, Any] | None = None
    try:
        env = {**os.environ, **server.env, "PATH": f"{agents}{os.pathsep}{os.environ['PATH']}"}
        agent = subprocess.Popen(
            [sys.executable, "-m", "hearth", "launch", "opencode", "--port", str(server.port),
             "--data-dir", str(logs / "data"), "--", "run", "List the files here."],
            env=env, cwd=logs, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 900
        while first is None and agent.poll() is None and time.monotonic() < deadline:
            time.sleep(2)
            rows = httpx.get(f"{server.url}/api/requests", params={"limit": 200}, timeout=10)
            for row in reversed(rows.json()["data"]):  # oldest first
                body = json.loads(row["request_body"] or "null")
                if row["path"] == "/v1/chat/completions" and body and body.get("tools"):
                    first = body
                    break
        os.killpg(agent.pid, 15)
        agent.wait(30)
    finally:
        server.stop()
    if first is None:
        raise SystemExit("OpenCode sent no request with tools")
    out = recording()
    out.write_text(json.dumps({"messages": first["messages"], "tools": first["tools"]}))
    return out


def first_turn() -> list[dict[str, Any]]:
    """The recorded messages, the tool list folded into the system prompt."""
    path = recording()
    if not path.exists():
        raise SystemExit(f"no recorded session at {path}: run `python -m bench.agents --record`")
    data = json.loads(path.read_text())
    messages = [dict(m) for m in data["messages"]]
    tools = json.dumps(data["tools"], separators=(",", ":"))
    messages[0]["content"] = f"{messages[0]['content']}\n\n# Tools\n{tools}"
    return messages


async def session(
    client: httpx.AsyncClient,
    peer: P.Peer,
    base: list[dict[str, Any]],
    results: list[str],
    number: int,
    extra: dict[str, Any],
) -> tuple[float, list[float], int]:
    """One session's 8 turns: (seconds, TTFTs of turns 2-8, errors)."""
    messages = [dict(m) for m in base]
    messages[-1] = {**messages[-1], "content": f"(session {number}) {messages[-1]['content']}"}
    started = time.perf_counter()
    ttfts: list[float] = []
    errors = 0
    for turn in range(TURNS):
        res = await stream_chat(client, peer.url, peer.model, messages, ANSWER_TOKENS, extra)
        if res.error is not None and not res.text and not res.error.startswith("HTTP"):
            # Dropped before any answer (a closed keep-alive connection): agents retry that,
            # and a turn left out would make the session look shorter than it is.
            print(f"{peer.name} session {number} turn {turn + 1}, retried: {res.error}")
            res = await stream_chat(client, peer.url, peer.model, messages, ANSWER_TOKENS, extra)
        if res.error is not None:
            errors += 1
            print(f"{peer.name} session {number} turn {turn + 1}: {res.error}", flush=True)
        elif turn > 0 and res.ttft is not None:
            ttfts.append(res.ttft)
        answer = res.text or "(no answer)"
        messages += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": results[(number + turn) % len(results)]},
        ]
    return time.perf_counter() - started, ttfts, errors


def run(
    peer: P.Peer, sessions: int, base: list[dict[str, Any]], results: list[str], nonce: str,
    extra: dict[str, Any],
) -> dict[str, float]:  # fmt: skip
    system = {**base[0], "content": f"Run {nonce}.\n{base[0]['content']}"}
    prompt = [system, *base[1:]]

    async def go() -> list[tuple[float, list[float], int]]:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=httpx.Timeout(1800), limits=limits) as client:
            return await asyncio.gather(
                *[session(client, peer, prompt, results, n, extra) for n in range(sessions)]
            )

    started = time.perf_counter()
    done = asyncio.run(go())
    wall = time.perf_counter() - started
    ttfts = [t for _, ts, _ in done for t in ts]
    return {
        "wall": wall,
        "ttft_p50": percentile(ttfts, 0.5) or 0.0,
        "errors": float(sum(e for _, _, e in done)),
    }


def agents(model: Path, threads: int, rounds: int, logs: Path, extra: dict[str, Any]) -> str:
    """The `agents` suite: Hearth against llama-server, rounds alternating, medians."""
    chosen = os.environ.get("BENCH_AGENT_SESSIONS")
    counts = tuple(int(n) for n in chosen.split(",")) if chosen else SESSIONS
    tok = Tokenizer(model)
    base = first_turn()
    results = [
        "Tool result (read):\n" + tok.text_of(RESULT_TOKENS, seed=1000 + i) for i in range(16)
    ]
    prompt_tokens = sum(tok.count(str(m["content"])) for m in base)
    build = ensure_llama_server()
    # llama-server caps a sequence at the context the model was trained for (8192 for the
    # starter); the sessions outgrow it, so it is told the model was trained for CTX.
    trained = f"{read_header(model).architecture}.context_length=int:{CTX}"
    servers = [
        P.hearth(model, threads, PARALLEL, CTX, logs),
        P.llama_server(build.server, model, threads, PARALLEL, CTX, logs, "--override-kv", trained),
    ]
    figures: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for s in servers:
            s.start()
        for rnd in range(rounds):
            order = servers if rnd % 2 == 0 else servers[::-1]
            for n in counts:
                for s in order:
                    nonce = f"{rnd}-{n}-{s.name}"
                    got = run(s, n, base, results, nonce, extra)
                    print(f"round {rnd + 1} {s.name} sessions={n}: {got}", flush=True)
                    figures.setdefault((s.name, n), []).append(got)
    finally:
        for s in servers:
            s.stop()
    lines = [
        f"The first turn: a recorded OpenCode request ({prompt_tokens} tokens with the tools "
        f"folded in); then {TURNS - 1} turns each adding the {ANSWER_TOKENS}-token answer and a "
        f"{RESULT_TOKENS}-token tool result. {PARALLEL} sequences of {CTX} tokens each, "
        f"llama.cpp commit {build.commit}; llama-server with its defaults (prompt cache on, "
        f"its RAM cache), told the model's trained context is {CTX} (it caps sequences there).",
        "",
        "| sessions | server | end-to-end s | ratio | TTFT p50, turns 2-8 | ratio | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in counts:
        ref = figures[("llama-server", n)]
        ref_wall, ref_ttft = med([f["wall"] for f in ref]), med([f["ttft_p50"] for f in ref])
        for s in servers:
            got = figures[(s.name, n)]
            wall, ttft = med([f["wall"] for f in got]), med([f["ttft_p50"] for f in got])
            errors = int(sum(f["errors"] for f in got))
            lines.append(
                f"| {n} | {s.name} | {wall:.1f} | {wall / ref_wall:.3f}x | {ttft * 1000:.0f} ms "
                f"| {ttft / ref_ttft:.3f}x | {errors} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--record", action="store_true", help="record the OpenCode session")
    args = ap.parse_args()
    if args.record:
        from hearth.models.packaged import STARTER, ensure_packaged
        from hearth.settings import default_models_dir

        model = ensure_packaged(STARTER, default_models_dir())
        logs = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
        (logs / "none.toml").touch()
        print(f"recorded {record(model, logs)}")
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
