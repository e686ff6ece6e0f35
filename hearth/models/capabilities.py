"""What a model can do, read from its header and chat template without loading it: Ollama's
capabilities (`completion`, `tools`, `thinking`, `embedding`, `insert`) and the
fill-in-the-middle tokens a `suffix` needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hearth.chat.reasoning import mentions_reasoning, reasoning_markers
from hearth.chat.template import FALLBACK_TEMPLATE
from hearth.chat.tools import detect_tool_format
from hearth.errors import InvalidModelFile
from hearth.models.registry import ModelEntry

# GGUF keys of the fill-in-the-middle tokens: llama.cpp's current names, then the older ones.
_FIM_KEYS = (("fim_pre", "fim_suf", "fim_mid"), ("prefix", "suffix", "middle"))


@dataclass(frozen=True, slots=True)
class FimTokens:
    """Token ids of a fill-in-the-middle prompt: prefix, suffix, then middle (the answer)."""

    prefix: int
    suffix: int
    middle: int


def fim_tokens(entry: ModelEntry) -> FimTokens | None:
    """The model's fill-in-the-middle tokens, or None when its vocabulary has none (then a
    `suffix` cannot be honoured)."""
    meta = entry.header.metadata if entry.header else {}
    for names in _FIM_KEYS:
        ids = [meta.get(f"tokenizer.ggml.{name}_token_id") for name in names]
        if all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            return FimTokens(*ids)  # type: ignore[arg-type]
    return None


def is_embedding_model(entry: ModelEntry) -> bool:
    """A model made for embeddings: its header names a pooling (as Ollama decides it)."""
    header = entry.header
    return header is not None and f"{header.architecture}.pooling_type" in header.metadata


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """The chat template a model is rendered with, and whether it is Hearth's fallback."""

    source: str
    is_fallback: bool


def template_source(entry: ModelEntry, server_file: Path | None = None) -> TemplateSource:
    """The template in effect, chosen as the model manager chooses it: the model's configured
    template, its template file, the server's template file, the GGUF's, else the fallback."""
    cfg = entry.config
    if cfg is not None and cfg.chat_template is not None:
        return TemplateSource(cfg.chat_template, False)
    path = (cfg.chat_template_file if cfg else None) or server_file
    if path is not None:
        try:
            return TemplateSource(path.read_text(encoding="utf-8"), False)
        except OSError as exc:
            raise InvalidModelFile(f"cannot read chat template file {path}: {exc}") from exc
    own = entry.header.chat_template if entry.header else None
    return TemplateSource(own, False) if own else TemplateSource(FALLBACK_TEMPLATE, True)


def capabilities(entry: ModelEntry, template: TemplateSource) -> list[str]:
    """Ollama's capability names: `embedding` or `completion`; for the latter, `tools` when the
    template renders tools itself, `thinking` when it knows reasoning markers, `insert` when
    the vocabulary has fill-in-the-middle tokens."""
    if is_embedding_model(entry):
        return ["embedding"]
    found = ["completion"]
    if detect_tool_format(template.source, is_fallback=template.is_fallback).native:
        found.append("tools")
    markers = reasoning_markers(template.source)
    if not template.is_fallback and mentions_reasoning(template.source, markers):
        found.append("thinking")
    if fim_tokens(entry) is not None:
        found.append("insert")
    return found
