"""Faults inside the engine, on the real starter model: each one fails its own request with a
clear error, frees what it held, and the next request is served."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth import Hearth
from hearth.engine.base import ChoiceFinished, GenerationRequest, SamplingParams, TextDelta
from hearth.engine.llamacpp import worker
from hearth.errors import EngineError
from tests.e2e.conftest import STARTER_ID, start_server

pytestmark = pytest.mark.e2e

ASK = [{"role": "user", "content": "Name a colour."}]


def hearth(tmp_path: Path, starter_model: Path) -> Hearth:
    (tmp_path / "c.toml").touch()
    return Hearth(
        model=[str(starter_model)],
        models_dir=tmp_path,
        config=tmp_path / "c.toml",
        engine_isolation="thread",  # the fault is injected in this process
        parallel=2,
    )


def test_a_request_that_fails_while_admitted_fails_alone(
    tmp_path: Path, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception after the request's sequences are chosen, before it runs: that request
    gets an error (it used to wait forever) and its sequences are free again."""

    class Broken:
        def __init__(self, *args: Any) -> None:
            raise RuntimeError("grammar sampler could not start")

    async def main() -> None:
        async with hearth(tmp_path, starter_model) as h:
            fmt = {"type": "json_object"}
            monkeypatch.setattr(worker, "GrammarSampler", Broken)
            for _ in range(3):  # more times than there are sequences: none stays taken
                with pytest.raises(EngineError, match="could not start the request"):
                    await asyncio.wait_for(
                        h.chat.completions.create(
                            model=STARTER_ID, messages=ASK, max_tokens=4, response_format=fmt
                        ),
                        timeout=60,
                    )
            monkeypatch.undo()
            reply = await h.chat.completions.create(
                model=STARTER_ID, messages=ASK, max_tokens=4, n=2
            )
            assert all(c.message.content for c in reply.choices)  # type: ignore[union-attr]
            engine = (await h.runtime.models.get(STARTER_ID)).engine
            assert all(s.state == "idle" for s in engine.status().slots)

    asyncio.run(main())


def test_the_finish_event_names_the_stop_string(tmp_path: Path, starter_model: Path) -> None:
    """What ended a choice: a stop string (and which), the end-of-generation token, or the
    length limit; Anthropic's stop_sequence and Ollama's done_reason need to know."""

    async def main() -> None:
        async with hearth(tmp_path, starter_model) as h:
            engine = (await h.runtime.models.get(STARTER_ID)).engine
            chat = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
            prompt = engine.tokenize(chat)

            async def run(**kw: Any) -> tuple[str, ChoiceFinished]:
                req = GenerationRequest(
                    prompt=list(prompt), sampling=SamplingParams(temperature=0.0), **kw
                )
                events = [e async for e in engine.generate(req)]
                text = "".join(e.text for e in events if isinstance(e, TextDelta))
                (done,) = [e for e in events if isinstance(e, ChoiceFinished)]
                return text, done

            text, ended = await run(max_tokens=200)
            assert (ended.finish_reason, ended.stop_sequence) == ("stop", None)  # end token
            word = text.split()[1]  # a stop string certain to come: the reply's second word
            cut, stopped = await run(max_tokens=200, stop=["\u2603", word])
            assert (stopped.finish_reason, stopped.stop_sequence) == ("stop", word)
            assert cut == text[: text.index(word)]
            _, limited = await run(max_tokens=2)
            assert (limited.finish_reason, limited.stop_sequence) == ("length", None)

    asyncio.run(main())


def test_a_context_that_does_not_fit_in_memory_is_not_a_bad_file(
    tmp_path: Path, starter_model: Path
) -> None:
    """A KV cache llama.cpp cannot allocate is a 503 about memory; the file stays usable."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(starter_model, models / "starter.gguf")
    huge = start_server(tmp_path, None, "--ctx-size", "16000000", models_dir=models)
    try:
        body = {"model": "starter", "messages": ASK, "max_tokens": 2}
        r = httpx.post(f"{huge.url}/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "insufficient_memory" and "--ctx-size" in err["message"]
        state = httpx.get(f"{huge.url}/v1/models/starter", timeout=10).json()["hearth"]
        assert state["status"] == "available" and "memory" in state["error"]
        assert httpx.get(f"{huge.url}/health", timeout=10).status_code == 200
    finally:
        huge.stop()
