"""Completions to and from the pipeline: raw prompts (no chat template) into a
`ConversationRequest`, the neutral events out as `Completion` chunks, the `Result` whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from hearth.api.completions.protocol import (
    Completion,
    CompletionChoice,
    CompletionRequest,
    Logprobs,
)
from hearth.api.openai_wire import base_request, new_id, now, output_format, wire_usage
from hearth.chat.pieces import Content
from hearth.engine.base import TokenLogprob
from hearth.errors import InvalidRequestError
from hearth.pipeline import events as ev
from hearth.pipeline.prepare import Prepared, prompt_items
from hearth.pipeline.request import ConversationRequest


def conversation(request: CompletionRequest) -> ConversationRequest:
    """The completion request as the internal one, its prompts used as they are."""
    out = base_request(request, request.model)
    items: list[Any] = prompt_items(request.prompt)
    if not items or any(isinstance(p, list) and not p for p in items):
        raise InvalidRequestError(
            "prompt must be a non-empty string, list of strings, or token ids", param="prompt"
        )
    out.prompts = items
    out.logprobs = request.logprobs
    out.format = output_format(request.response_format)
    out.grammar = request.grammar
    return out


def _legacy_logprobs(items: list[TokenLogprob], offset: int) -> Logprobs:
    out = Logprobs()
    for lp in items:
        out.text_offset.append(offset)
        out.tokens.append(lp.token)
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({t.token: t.logprob for t in lp.top})
        offset += len(lp.token)
    return out


def _finish(event: ev.Finished | None) -> Literal["stop", "length"]:
    return "length" if event is not None and event.reason == "length" else "stop"


def completion(prepared: Prepared, request: CompletionRequest, result: ev.Result) -> Completion:
    n = prepared.n
    echo = bool(request.echo)
    choices = []
    for i, c in enumerate(result.choices):
        prefix = prepared.prompt_texts[i // n] if echo else ""
        choices.append(
            CompletionChoice(
                index=i,
                text=prefix + c.text,
                finish_reason=_finish(c.finish),
                logprobs=_legacy_logprobs(c.logprobs, len(prefix))
                if request.logprobs is not None
                else None,
            )
        )
    return Completion(
        id=new_id("cmpl"),
        created=now(),
        model=prepared.model.entry.id,
        choices=choices,
        usage=wire_usage(result.usage),
    )


async def chunks(
    prepared: Prepared, events: AsyncIterator[ev.Event], *, request: CompletionRequest
) -> AsyncIterator[Completion | ev.KeepAlive]:
    """The stream: the echoed prompts, text chunks, one finish chunk per choice, usage last
    when asked."""
    cid = new_id("cmpl")
    created = now()
    model_id = prepared.model.entry.id
    n = prepared.n
    offsets = [0] * (n * len(prepared.generations))

    def chunk(choices: list[CompletionChoice]) -> Completion:
        return Completion(id=cid, created=created, model=model_id, choices=choices)

    if request.echo:
        for i in range(len(offsets)):
            text = prepared.prompt_texts[i // n]
            offsets[i] = len(text)
            yield chunk([CompletionChoice(index=i, text=text, finish_reason=None)])
    async for event in events:
        if isinstance(event, ev.Output):
            i = event.index
            # Raw prompts have no output parser beyond plain content.
            text = "".join(p.text for p in event.pieces if isinstance(p, Content))
            lp = (
                _legacy_logprobs(event.logprobs, offsets[i]) if event.logprobs is not None else None
            )
            offsets[i] += len(text)
            yield chunk([CompletionChoice(index=i, text=text, finish_reason=None, logprobs=lp)])
        elif isinstance(event, ev.Finished):
            if event.reason not in ("cancelled", "error"):
                yield chunk(
                    [CompletionChoice(index=event.index, text="", finish_reason=_finish(event))]
                )
        elif isinstance(event, ev.Done):
            if request.include_usage:
                final = chunk([])
                final.usage = wire_usage(event.usage)
                yield final
        elif isinstance(event, ev.Progress):
            yield ev.KEEP_ALIVE
