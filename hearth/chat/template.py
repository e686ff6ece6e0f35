"""Chat templates from the GGUF (tokenizer.chat_template), rendered as Hugging Face does, in
jinja2's immutable sandbox so a template cannot reach Python internals."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.errors import InvalidModelFile, InvalidRequestError

# Used when a GGUF carries no template: ChatML, which most small instruct models were tuned on.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateError(Exception):
    """Raised by a template's raise_exception(): the messages break the model's rules."""


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Hugging Face's tojson keeps non-ASCII text as is, unlike jinja2's HTML-safe default.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidModelFile(f"the model's chat template does not parse: {exc}") from exc


class ChatTemplate:
    """A compiled chat template and the special tokens it may refer to."""

    def __init__(self, source: str | None, *, bos_token: str, eos_token: str):
        self.source = source or FALLBACK_TEMPLATE
        self.is_fallback = source is None
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._template = _compile(self.source)

    @classmethod
    def from_file(cls, path: Path, *, bos_token: str, eos_token: str) -> ChatTemplate:
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidModelFile(f"cannot read chat template file {path}: {exc}") from exc
        return cls(source, bos_token=bos_token, eos_token=eos_token)

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt text for these messages; a template's own refusal is a 400."""
        try:
            return self._template.render(
                messages=messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **kwargs,
            )
        except TemplateError as exc:
            raise InvalidRequestError(
                f"the model's chat template rejected the messages: {exc}", param="messages"
            ) from exc
        except SecurityError as exc:
            raise InvalidModelFile(f"the chat template tried an unsafe operation: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise InvalidRequestError(
                f"the model's chat template failed on these messages: {exc}", param="messages"
            ) from exc
