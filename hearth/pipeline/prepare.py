"""A conversation made concrete for the model its lease holds: prompt plan, tokens, resolved
sampling, grammar, and the engine's context check, each done once. Bad input raises here,
before anything runs. CPU work (and, with engine children, calls to one): run it off the event
loop."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearth.chat.output import OutputParser
from hearth.engine.base import Engine, GenerationRequest, SamplingParams
from hearth.errors import ContextLengthExceeded, InvalidRequestError
from hearth.models.manager import LoadedModel
from hearth.pipeline.plan import ChatPlan, build_plan, output_grammar
from hearth.pipeline.request import ConversationRequest, ReasoningFormat, Sampling

if TYPE_CHECKING:
    from hearth.pipeline.events import Event

MAX_STOP = 16

# The server's defaults when neither the request nor the model's GGUF says otherwise;
# the same as llama.cpp's server, so outputs are comparable.
SERVER_SAMPLING_DEFAULTS = SamplingParams()


@dataclass(slots=True)
class Prepared:
    """What runs: one generation per prompt (one for a conversation), each with `n` choices;
    the prompt texts (rendered, or the raw prompts as text); how to read the output."""

    request: ConversationRequest
    model: LoadedModel
    generations: list[GenerationRequest]
    prompt_texts: list[str]
    plan: ChatPlan | None  # None: raw prompts, the output is plain text
    load_ns: int = 0  # time spent getting the model (loading it, or waiting for room)
    # An upstream model's output, already accepted by its server (None: a local engine's),
    # and the time.monotonic() it must end by (--request-timeout).
    source: AsyncGenerator[Event, None] | None = None
    deadline: float | None = None

    @property
    def n(self) -> int:
        return self.generations[0].n

    def parser(self) -> OutputParser:
        """A fresh output parser for one choice."""
        return self.plan.parser() if self.plan is not None else OutputParser()


def resolve_sampling(
    fields: Sampling,
    model_defaults: Mapping[str, float | int],
    n_vocab: int,
    configured: Mapping[str, float | int] | None = None,
) -> SamplingParams:
    """Request value, else the model's configured default (`[[models]]` sampling), else its
    recommendation (from its GGUF), else the server default."""
    base = SERVER_SAMPLING_DEFAULTS
    configured = configured or {}

    def pick(name: str, value: float | int | None) -> float:
        if value is not None:
            return value
        if name in configured:
            return configured[name]
        if name in model_defaults:
            return model_defaults[name]
        return float(getattr(base, name))

    return SamplingParams(
        temperature=pick("temperature", fields.temperature),
        top_p=pick("top_p", fields.top_p),
        top_k=int(pick("top_k", fields.top_k)),
        min_p=pick("min_p", fields.min_p),
        repeat_penalty=pick("repeat_penalty", fields.repeat_penalty),
        repeat_last_n=int(pick("repeat_last_n", fields.repeat_last_n)),
        presence_penalty=pick("presence_penalty", fields.presence_penalty),
        frequency_penalty=pick("frequency_penalty", fields.frequency_penalty),
        seed=fields.seed,
        logit_bias=parse_logit_bias(fields.logit_bias, n_vocab),
    )


def check_token_ids(ids: Iterable[int], n_vocab: int, param: str, where: str = "") -> None:
    """Refuse a token id outside the vocabulary before any native call sees it (llama.cpp
    reads out of bounds, or aborts the process). `where` names the part: 'in prompt 2'."""
    for token in ids:
        # bool is an int to Python; the wire models refuse it, library callers may not.
        if isinstance(token, bool) or not 0 <= token < n_vocab:
            at = f" {where}" if where else ""
            raise InvalidRequestError(
                f"token id {token!r}{at} is outside the vocabulary (0..{n_vocab - 1})",
                param=param,
            )


def parse_logit_bias(
    bias: Mapping[str, float] | None, n_vocab: int
) -> tuple[tuple[int, float], ...]:
    if not bias:
        return ()
    out = []
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequestError(
                f"logit_bias keys must be token ids, got {key!r}", param="logit_bias"
            ) from None
        check_token_ids([token], n_vocab, "logit_bias", where="in logit_bias")
        if not -100.0 <= value <= 100.0:
            raise InvalidRequestError(
                f"logit_bias values must be between -100 and 100, got {value}", param="logit_bias"
            )
        out.append((token, float(value)))
    return tuple(out)


def normalize_stop(stop: str | list[str] | None) -> list[str]:
    """Stop strings as a list, empty ones dropped; at most MAX_STOP."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP:
        raise InvalidRequestError(f"at most {MAX_STOP} stop strings are allowed", param="stop")
    return [s for s in stops if s]


def prompt_items(raw: str | list[Any]) -> list[Any]:
    """A prompt or input field's four shapes (a text, texts, token ids, lists of token ids)
    as one item per prompt."""
    if isinstance(raw, str):
        return [raw]
    if raw and all(isinstance(t, int) for t in raw):
        return [raw]
    return list(raw)


def tokenized_items(
    items: list[str | list[int]],
    engine: Engine,
    *,
    param: str,
    noun: str,
    add_special: bool = True,
) -> list[list[int]]:
    """Each item as token ids: token ids are checked against the vocabulary, and every text
    is tokenized in one call (one round trip where the tokenizer lives in an engine child)."""
    n_vocab = engine.info.n_vocab
    texts: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            texts.append(item)
        else:
            check_token_ids(item, n_vocab, param, where=f"in {noun} {i}")
    tokenized = iter(engine.tokenize_many(texts, add_special=add_special) if texts else [])
    return [next(tokenized) if isinstance(item, str) else list(item) for item in items]


def special_tokens(engine: Engine, markers: list[str]) -> frozenset[int]:
    """The markers that are single (control) tokens of this model, to be written as text."""
    if not markers:
        return frozenset()
    tokenized = engine.tokenize_many(markers, add_special=False)  # one call, not one each
    return frozenset(tokens[0] for tokens in tokenized if len(tokens) == 1)


def rendered(
    request: ConversationRequest, model: LoadedModel, default_reasoning: ReasoningFormat
) -> tuple[ChatPlan, list[int]]:
    """The conversation's plan and its prompt's tokens (what a token count counts)."""
    plan = build_plan(request, model.template, default_reasoning, system_prompt=model.system_prompt)
    # Templates that write the BOS token themselves must not get a second one; a prompt
    # that continues a context is not the start of the sequence.
    info = model.engine.info
    add_special = not (info.bos_token and plan.prompt.startswith(info.bos_token))
    if request.context:
        check_token_ids(request.context, info.n_vocab, "context")
        tokens = model.engine.tokenize(plan.prompt, add_special=False)
        return plan, [*request.context, *tokens]
    return plan, model.engine.tokenize(plan.prompt, add_special=add_special)


def infill(engine: Engine, before: str, after: str, *, bos: bool = True) -> list[int]:
    """A fill-in-the-middle prompt, as llama.cpp's server writes it: [BOS] PRE before SUF
    after MID; the model writes what goes between."""
    fim = engine.info.fim
    if fim is None:
        raise InvalidRequestError(
            f"the model '{engine.info.id}' has no fill-in-the-middle tokens, so it cannot "
            "complete between a prompt and a suffix; use a code model trained for it",
            param="suffix",
        )
    pre, suf, mid = fim
    # The BOS token, if the model wants one and this starts the sequence.
    head = engine.tokenize("", add_special=True) if bos else []
    before_ids, after_ids = engine.tokenize_many([before, after], add_special=False)
    return [*head, pre, *before_ids, suf, *after_ids, mid]


def _max_tokens(request: ConversationRequest, prompt: list[int], ctx_size: int) -> int | None:
    """max_tokens for one prompt: within the request's own window, if it has one (a window
    larger than the loaded context is the loaded context); with `reserve_output`, all of it
    must fit in the context or the request is refused."""
    asked = request.max_tokens
    if request.reserve_output and asked and len(prompt) + asked > ctx_size:
        raise ContextLengthExceeded(
            f"the prompt has {len(prompt)} tokens, which leaves less than the {asked} tokens "
            f"asked for the answer in this model's context of {ctx_size} tokens",
            param="max_tokens",
        )
    if request.window is None:
        return asked
    window = min(request.window, ctx_size)
    room = window - len(prompt)
    if room <= 0:
        raise ContextLengthExceeded(
            f"the prompt has {len(prompt)} tokens, which leaves no room in this request's "
            f"context window of {window} tokens",
            param=request.window_param,
        )
    return min(asked or room, room)


def prepare(
    request: ConversationRequest, model: LoadedModel, default_reasoning: ReasoningFormat
) -> Prepared:
    """The request made concrete for `model`; bad input raises here."""
    engine = model.engine
    info = engine.info
    sampling = resolve_sampling(
        request.sampling, info.sampling_defaults, info.n_vocab, configured=model.sampling
    )
    plan: ChatPlan | None = None
    if request.prompts is not None:
        if not request.prompts:
            raise InvalidRequestError("prompt must not be empty", param="prompt")
        if request.suffix is not None:
            if len(request.prompts) != 1 or not isinstance(request.prompts[0], str):
                raise InvalidRequestError("a suffix needs one text prompt", param="suffix")
            before = request.prompts[0]
            prompts = [infill(engine, before, request.suffix, bos=not request.context)]
        else:
            prompts = tokenized_items(
                request.prompts,
                engine,
                param="prompt",
                noun="prompt",
                add_special=not request.context,
            )
        if request.context:
            check_token_ids(request.context, info.n_vocab, "context")
            prompts = [[*request.context, *p] for p in prompts]
        texts = [p if isinstance(p, str) else engine.detokenize(p) for p in request.prompts]
        grammar = output_grammar(request.format, request.grammar)
        keep_special: frozenset[int] = frozenset()
    else:
        plan, tokens = rendered(request, model, default_reasoning)
        prompts = [tokens]
        texts = [plan.prompt]
        grammar = plan.grammar
        keep_special = special_tokens(engine, plan.markers)
    generations = [
        engine.check(
            GenerationRequest(
                prompt=tokens,
                sampling=sampling,
                max_tokens=_max_tokens(request, tokens, info.ctx_size),
                stop=request.stop,
                n=request.n,
                logprobs=request.logprobs,
                ignore_eos=request.ignore_eos,
                speculative=request.speculative,
                draft_max=request.draft_max,
                grammar=grammar,
                keep_special=keep_special,
            )
        )
        for tokens in prompts
    ]
    return Prepared(request, model, generations, texts, plan)


def prepare_remote(request: ConversationRequest, model: LoadedModel) -> Prepared:
    """The request for an upstream model, which templates and tokenizes it itself: only the
    shape of the answer (prompts, choices) is known here."""
    if request.prompts is not None and not request.prompts:
        raise InvalidRequestError("prompt must not be empty", param="prompt")
    if request.context:
        raise InvalidRequestError(
            f"the model '{model.entry.id}' runs on an upstream server, which cannot continue "
            "token ids from an earlier answer; send the conversation instead",
            param="context",
        )
    prompts = request.prompts if request.prompts is not None else [""]
    generations = [
        GenerationRequest(
            prompt=[],
            max_tokens=request.max_tokens,
            stop=request.stop,
            n=request.n,
            logprobs=request.logprobs,
        )
        for _ in prompts
    ]
    texts = [p if isinstance(p, str) else "" for p in prompts]
    return Prepared(request, model, generations, texts, None)
