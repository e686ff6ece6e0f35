from __future__ import annotations

from pathlib import Path

import pytest

from hearth.chat.template import FALLBACK_TEMPLATE, ChatTemplate
from hearth.errors import InvalidModelFile, InvalidRequestError
from hearth.models.gguf_header import read_header


def test_starter_model_template_renders_chatml(starter_model: Path) -> None:
    source = read_header(starter_model).chat_template
    assert source is not None
    t = ChatTemplate(source, bos_token="<|im_start|>", eos_token="<|im_end|>")
    text = t.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_generation_prompt_is_optional() -> None:
    t = ChatTemplate(None, bos_token="", eos_token="")
    text = t.render([{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert not text.endswith("assistant\n")
    assert t.is_fallback and t.source == FALLBACK_TEMPLATE


def test_bos_eos_and_tojson_like_hugging_face() -> None:
    t = ChatTemplate(
        "{{ bos_token }}{{ messages[0]['content'] | tojson }}{{ eos_token }}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert t.render([{"role": "user", "content": "héllo"}]) == '<s>"héllo"</s>'


def test_raise_exception_is_a_400() -> None:
    t = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}",
        bos_token="",
        eos_token="",
    )
    with pytest.raises(InvalidRequestError, match="user first"):
        t.render([{"role": "assistant", "content": "x"}])


def test_sandbox_blocks_python_internals() -> None:
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    t = ChatTemplate(evil, bos_token="", eos_token="")
    with pytest.raises((InvalidModelFile, InvalidRequestError)):
        t.render([{"role": "user", "content": "x"}])


def test_sandbox_is_immutable() -> None:
    t = ChatTemplate("{{ messages.append(1) }}", bos_token="", eos_token="")
    with pytest.raises((InvalidModelFile, InvalidRequestError)):
        t.render([{"role": "user", "content": "x"}])


def test_bad_template_syntax_is_a_model_error() -> None:
    with pytest.raises(InvalidModelFile):
        ChatTemplate("{% for %}", bos_token="", eos_token="")
