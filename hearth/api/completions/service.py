"""Completions: raw prompts (text or token ids) into the engine, no chat template."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hearth.api.completions.protocol import (
    Completion,
    CompletionChoice,
    CompletionRequest,
    Logprobs,
)
from hearth.api.generation import (
    KEEP_ALIVE,
    KeepAlive,
    check_token_ids,
    new_id,
    normalize_stop,
    now,
    output_grammar,
    resolve_sampling,
    wire_usage,
)
from hearth.engine.base import (
    ChoiceFinished,
    Engine,
    Event,
    FinishReason,
    GenerationFinished,
    GenerationRequest,
    PromptProgress,
    TextDelta,
    TokenLogprob,
    Usage,
)
from hearth.errors import InvalidRequestError
from hearth.models.manager import LoadedModel, ModelManager


@dataclass(slots=True)
class PreparedCompletion:
    request: CompletionRequest
    model: LoadedModel
    prompts: list[str]  # the prompt texts, for echo
    generations: list[GenerationRequest]


def _legacy_logprobs(items: list[TokenLogprob], offset: int) -> Logprobs:
    out = Logprobs()
    for lp in items:
        out.text_offset.append(offset)
        out.tokens.append(lp.token)
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({t.token: t.logprob for t in lp.top})
        offset += len(lp.token)
    return out


def _split_prompts(raw: object, engine: Engine) -> tuple[list[str], list[list[int]]]:
    """The prompt field's four shapes as (texts, token lists), one pair per prompt. Token ids
    are checked before detokenize: llama.cpp aborts on an id outside the vocabulary."""
    n_vocab = engine.info.n_vocab
    if isinstance(raw, str):
        return [raw], [engine.tokenize(raw)]
    items: list[Any] = list(raw) if isinstance(raw, list) else []
    if items and all(isinstance(p, int) for p in items):
        check_token_ids(items, n_vocab, "prompt")
        return [engine.detokenize(items)], [items]
    if items and all(isinstance(p, list) and p for p in items):
        for i, p in enumerate(items):
            check_token_ids(p, n_vocab, "prompt", where=f"in prompt {i}")
        return [engine.detokenize(p) for p in items], [list(p) for p in items]
    if items and all(isinstance(p, str) for p in items):
        return list(items), engine.tokenize_many(list(items))
    raise InvalidRequestError(
        "prompt must be a non-empty string, list of strings, or token ids", param="prompt"
    )


class CompletionsService:
    """POST /v1/completions, without HTTP."""

    def __init__(self, models: ModelManager):
        self.models = models

    async def create(
        self, request: CompletionRequest
    ) -> Completion | AsyncIterator[Completion | KeepAlive]:
        # The lease keeps the model loaded until the answer (or the stream) is over.
        async with self.models.use(request.model, request.keep_alive_seconds) as lease:
            # Rendering, tokenizing and checks are CPU work: off the event loop.
            prepared = await asyncio.to_thread(self.prepare, request, lease.model)
            if request.stream:
                return lease.hold(self._stream(prepared))
            return await self._complete(prepared)

    def prepare(self, request: CompletionRequest, model: LoadedModel) -> PreparedCompletion:
        """The request made concrete for the model its lease holds; bad input raises here."""
        engine = model.engine
        info = engine.info
        texts, token_prompts = _split_prompts(request.prompt, engine)
        sampling = resolve_sampling(
            request,
            info.sampling_defaults,
            info.n_vocab,
            configured=model.sampling,
        )
        stop = normalize_stop(request.stop)
        grammar = output_grammar(request.response_format, request.grammar)
        generations = [
            engine.check(
                GenerationRequest(
                    prompt=tokens,
                    sampling=sampling,
                    max_tokens=request.max_tokens,
                    stop=stop,
                    n=request.n or 1,
                    logprobs=request.logprobs,
                    ignore_eos=bool(request.ignore_eos),
                    speculative=request.speculative,
                    draft_max=request.draft_max,
                    grammar=grammar,
                )
            )
            for tokens in token_prompts
        ]
        return PreparedCompletion(request, model, texts, generations)

    async def _events(self, prepared: PreparedCompletion) -> AsyncIterator[tuple[int, Event]]:
        """Events of every prompt's generation, merged as they come: (prompt index, event)."""
        engine = prepared.model.engine
        if len(prepared.generations) == 1:
            async for event in engine.generate(prepared.generations[0]):
                yield 0, event
            return
        merged: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

        async def pump(i: int, gen: GenerationRequest) -> None:
            try:
                async for event in engine.generate(gen):
                    merged.put_nowait((i, event))
            except Exception as exc:
                merged.put_nowait((i, exc))
            finally:
                merged.put_nowait((i, None))

        tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(prepared.generations)]
        try:
            remaining = len(tasks)
            while remaining:
                i, item = await merged.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield i, item
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _complete(self, prepared: PreparedCompletion) -> Completion:
        n = prepared.generations[0].n
        total = n * len(prepared.generations)
        texts: list[list[str]] = [[] for _ in range(total)]
        lps: list[list[TokenLogprob]] = [[] for _ in range(total)]
        finish: list[FinishReason] = ["stop"] * total
        usage = Usage(0, 0, 0)
        async for p, event in self._events(prepared):
            if isinstance(event, TextDelta):
                texts[p * n + event.index].append(event.text)
                if event.logprobs:
                    lps[p * n + event.index].extend(event.logprobs)
            elif isinstance(event, ChoiceFinished):
                finish[p * n + event.index] = event.finish_reason
            elif isinstance(event, GenerationFinished):
                usage.prompt_tokens += event.usage.prompt_tokens
                usage.completion_tokens += event.usage.completion_tokens
                usage.cached_tokens += event.usage.cached_tokens
        echo = bool(prepared.request.echo)
        choices = []
        for i in range(total):
            prefix = prepared.prompts[i // n] if echo else ""
            choices.append(
                CompletionChoice(
                    index=i,
                    text=prefix + "".join(texts[i]),
                    finish_reason=finish[i],
                    logprobs=_legacy_logprobs(lps[i], len(prefix))
                    if prepared.request.logprobs is not None
                    else None,
                )
            )
        return Completion(
            id=new_id("cmpl"),
            created=now(),
            model=prepared.model.entry.id,
            choices=choices,
            usage=wire_usage(usage),
        )

    async def _stream(self, prepared: PreparedCompletion) -> AsyncIterator[Completion | KeepAlive]:
        request = prepared.request
        cid = new_id("cmpl")
        created = now()
        model_id = prepared.model.entry.id
        n = prepared.generations[0].n
        include_usage = request.include_usage
        usage = Usage(0, 0, 0)
        offsets = [0] * (n * len(prepared.generations))

        def chunk(choices: list[CompletionChoice]) -> Completion:
            return Completion(id=cid, created=created, model=model_id, choices=choices)

        if request.echo:
            for i in range(len(offsets)):
                text = prepared.prompts[i // n]
                offsets[i] = len(text)
                yield chunk([CompletionChoice(index=i, text=text, finish_reason=None)])
        async for p, event in self._events(prepared):
            if isinstance(event, TextDelta):
                i = p * n + event.index
                lp = (
                    _legacy_logprobs(event.logprobs, offsets[i])
                    if event.logprobs is not None
                    else None
                )
                offsets[i] += len(event.text)
                yield chunk(
                    [CompletionChoice(index=i, text=event.text, finish_reason=None, logprobs=lp)]
                )
            elif isinstance(event, ChoiceFinished):
                yield chunk(
                    [
                        CompletionChoice(
                            index=p * n + event.index, text="", finish_reason=event.finish_reason
                        )
                    ]
                )
            elif isinstance(event, GenerationFinished):
                usage.prompt_tokens += event.usage.prompt_tokens
                usage.completion_tokens += event.usage.completion_tokens
                usage.cached_tokens += event.usage.cached_tokens
            elif isinstance(event, PromptProgress):
                yield KEEP_ALIVE
        if include_usage:
            final = chunk([])
            final.usage = wire_usage(usage)
            yield final
