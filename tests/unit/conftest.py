"""Unit-tier fixtures: the starter model's vocabulary, and llama.cpp as the judge of grammars."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hearth.engine.base import SamplingParams
from hearth.engine.llamacpp.native import NativeModel
from hearth.engine.llamacpp.sampler import GrammarSampler

Accepts = Callable[[str, str], bool]


@pytest.fixture(scope="session")
def model(starter_model: Path) -> Iterator[NativeModel]:
    m = NativeModel(starter_model)
    yield m
    m.close()


@pytest.fixture(scope="session")
def accepts(model: NativeModel) -> Accepts:
    """Whether llama.cpp's grammar engine takes `text` whole: every token allowed in turn, and
    the end allowed after the last."""

    def check(grammar: str, text: str) -> bool:
        g = GrammarSampler(model.vocab, model.n_vocab, grammar, SamplingParams())
        try:
            for token in model.tokenize(text, add_special=False, parse_special=False):
                if not g.allows(token):
                    return False
                g.accept(token)
            return g.allows(model.eos)
        finally:
            g.free()

    return check
