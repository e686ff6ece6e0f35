"""Per-sequence sampler chains, in llama.cpp's own order (as llama-server builds them), and
the grammar that may constrain them."""

from __future__ import annotations

import ctypes
import math
import random
from typing import Any

import llama_cpp
import numpy as np

from hearth.engine.base import SamplingParams
from hearth.errors import EngineError, InvalidRequestError


def new_seed() -> int:
    return random.getrandbits(32) & 0xFFFFFFFE  # 0xFFFFFFFF means "random" to llama.cpp


def uses_penalties(params: SamplingParams) -> bool:
    """Whether the chain keeps a token history (the penalties), so picks must be exact."""
    return (
        params.repeat_penalty != 1.0
        or params.frequency_penalty != 0.0
        or params.presence_penalty != 0.0
    )


def build_chain(params: SamplingParams, n_vocab: int, seed: int) -> Any:
    """A sampler chain for one sequence; free it with free_chain."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add

    if params.logit_bias:
        biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
        for i, (token, bias) in enumerate(params.logit_bias):
            biases[i].token = token  # type: ignore[assignment]
            biases[i].bias = bias
        add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(params.logit_bias), biases))

    if uses_penalties(params):
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                n_vocab,
                params.repeat_last_n,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            ),
        )

    if params.temperature <= 0.0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain

    if params.top_k > 0:
        add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def free_chain(chain: Any) -> None:
    if chain:
        llama_cpp.llama_sampler_free(chain)


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
# Candidates the grammar judges first when a pick is refused (see GrammarSampler._narrow).
SHORTLIST = 256


def grammar_parses(vocab: Any, text: str) -> bool:
    """Whether llama.cpp's GBNF parser accepts this grammar (with a `root` rule)."""
    ptr = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
    if ptr:
        llama_cpp.llama_sampler_free(ptr)
    return bool(ptr)


class GrammarSampler:
    """A GBNF grammar beside a sequence's sampler chain, sampled the way llama.cpp's common
    sampler does: pick without the grammar first (cheap), keep the pick if the grammar allows
    it, else apply the grammar to the whole vocabulary and pick again. Every chosen token is
    accepted by both, and a token the grammar forbids is never accepted (llama.cpp aborts)."""

    def __init__(self, vocab: Any, n_vocab: int, text: str, params: SamplingParams):
        self.ptr = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
        if not self.ptr:
            raise InvalidRequestError("llama.cpp could not parse the grammar", param="grammar")
        self.n_vocab = n_vocab
        # Without penalties the chain has no history, so a first pick in C (which accepts the
        # token into the chain at once) is harmless when the grammar then refuses it.
        self.fast = not uses_penalties(params)
        # With no bias or penalties, the chain only looks at the top_k best allowed tokens (the
        # best one when greedy), so a shortlist holding that many allowed ones decides exactly.
        greedy = params.temperature <= 0.0
        self.needed = 1 if greedy else params.top_k
        self.narrow = self.fast and not params.logit_bias and (greedy or params.top_k > 0)
        self.short = min(max(SHORTLIST, 4 * self.needed), n_vocab)
        self._data = (llama_cpp.llama_token_data * n_vocab)()
        self._view = np.frombuffer(memoryview(self._data).cast("B"), dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._array = llama_cpp.llama_token_data_array()
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(self._one, 1, -1, False)

    def allows(self, token: int) -> bool:
        """Whether the grammar accepts this token next (end-of-generation: only when done)."""
        self._one[0].id = token  # type: ignore[assignment]
        self._one[0].logit = 1.0
        self._one_array.data = self._one
        self._one_array.size = 1
        llama_cpp.llama_sampler_apply(self.ptr, ctypes.byref(self._one_array))
        return bool(self._one_array.data[0].logit != -math.inf)

    def accept(self, token: int) -> None:
        """Advance the grammar past a token it allows."""
        llama_cpp.llama_sampler_accept(self.ptr, token)

    def sample(self, chain: Any, ctx: Any, idx: int) -> int:
        """Pick the next token at batch position idx and accept it in chain and grammar."""
        if self.fast:
            token = llama_cpp.llama_sampler_sample(chain, ctx, idx)
            if self.allows(token):
                self.accept(token)
                return int(token)
        ptr = llama_cpp.llama_get_logits_ith(ctx, idx)
        logits = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        )
        if not self.fast:
            token = self._pick(chain, logits, constrained=False)
        if self.fast or not self.allows(token):
            token = self._narrow(chain, logits) if self.narrow else -1
            if token < 0:
                token = self._pick(chain, logits, constrained=True)
            if token < 0:
                raise EngineError("the grammar allows no token at this point of the output")
        llama_cpp.llama_sampler_accept(chain, token)
        self.accept(token)
        return int(token)

    def _narrow(self, chain: Any, logits: Any) -> int:
        """The constrained pick from the highest logits only; -1 when too few are allowed."""
        top = np.argpartition(logits, -self.short)[-self.short :]
        view = self._view[: self.short]
        view["id"] = top
        view["logit"] = logits[top]
        view["p"] = 0.0
        arr = self._array
        arr.data = self._data
        arr.size = self.short
        arr.selected = -1
        arr.sorted = False
        llama_cpp.llama_sampler_apply(self.ptr, ctypes.byref(arr))
        allowed = int(np.count_nonzero(view["logit"] != -np.inf))
        if allowed < self.needed:
            return -1
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(arr))
        return int(arr.data[arr.selected].id)

    def _pick(self, chain: Any, logits: Any, *, constrained: bool) -> int:
        view = self._view
        view["id"] = self._ids  # samplers sort the array in place
        view["logit"] = logits
        view["p"] = 0.0
        arr = self._array
        arr.data = self._data  # samplers may move the pointer; start from the full array
        arr.size = self.n_vocab
        arr.selected = -1
        arr.sorted = False
        if constrained:
            llama_cpp.llama_sampler_apply(self.ptr, ctypes.byref(arr))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(arr))
        chosen = arr.data[arr.selected]
        if constrained and chosen.logit == -math.inf:
            return -1
        return int(chosen.id)

    def free(self) -> None:
        if self.ptr:
            llama_cpp.llama_sampler_free(self.ptr)
            self.ptr = None
