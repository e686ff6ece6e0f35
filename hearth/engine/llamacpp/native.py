"""Thin typed wrappers over llama-cpp-python's ctypes API: one loaded model and its vocabulary.

Only this package imports llama_cpp; everything above it sees plain Python types."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import llama_cpp

from hearth.errors import InsufficientMemory, InvalidModelFile, InvalidRequestError

log = logging.getLogger("hearth.llamacpp")

_LOG_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _log_callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp is chatty at load; its lines go to our logger at debug unless they are problems.
    py_level = _LOG_LEVELS.get(level, logging.DEBUG)
    if py_level < logging.WARNING:
        py_level = logging.DEBUG
    if log.isEnabledFor(py_level):
        log.log(py_level, "%s", text.decode("utf-8", "replace").rstrip())


@functools.cache
def init_backend() -> None:
    """Initialise llama.cpp once per process and route its log to Python logging (both calls
    are idempotent, so a race between two first loads is harmless)."""
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()


def default_threads() -> int:
    """Threads for decoding: the cores this process may use (llama.cpp's own default is similar)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class NativeModel:
    """A llama_model and its vocab. Thread-safe for reads (tokenize, metadata)."""

    def __init__(self, path: Path, *, gpu_layers: int = 0, use_mmap: bool = True):
        init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = gpu_layers if gpu_layers >= 0 else 2**31 - 1
        params.use_mmap = use_mmap
        ptr = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not ptr:
            raise InvalidModelFile(f"llama.cpp could not load {path.name}", param="model")
        self.ptr = ptr
        self.path = path
        self.vocab = llama_cpp.llama_model_get_vocab(ptr)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(ptr)
        self.n_embd: int = llama_cpp.llama_model_n_embd(ptr)
        self.n_swa: int = llama_cpp.llama_model_n_swa(ptr)
        self.bos: int = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos: int = llama_cpp.llama_vocab_eos(self.vocab)
        self.add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self._piece_buf = threading.local()

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None

    # -- metadata ---------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.ptr, buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def n_params(self) -> int:
        return int(llama_cpp.llama_model_n_params(self.ptr))

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8", "replace") if raw else None

    # -- vocabulary ---------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), buf, capacity, add_special, parse_special
        )
        if n < 0:  # buffer too small: -n is the size needed
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buf, capacity, add_special, parse_special
            )
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes one token stands for (may be part of a UTF-8 character)."""
        if not 0 <= token < self.n_vocab:  # llama.cpp throws (and aborts) on an unknown id
            raise InvalidRequestError(
                f"token id {token} is outside the vocabulary (0..{self.n_vocab - 1})"
            )
        buf = getattr(self._piece_buf, "buf", None)
        if buf is None:
            buf = self._piece_buf.buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, big, len(big), 0, special)
            return big.raw[:n]
        return buf.raw[:n]

    def token_text(self, token: int) -> str:
        """A token as text, special tokens included (for templates' bos/eos strings)."""
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", "replace")

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    def fim_tokens(self) -> tuple[int, int, int] | None:
        """(prefix, suffix, middle) fill-in-the-middle tokens, or None if any is missing."""
        v = self.vocab
        ids = (llama_cpp.llama_vocab_fim_pre(v), llama_cpp.llama_vocab_fim_suf(v))
        tokens = (*ids, llama_cpp.llama_vocab_fim_mid(v))
        return tokens if all(0 <= t < self.n_vocab for t in tokens) else None

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # -- contexts -----------------------------------------------------------------------------

    def new_context(self, **overrides: Any) -> Any:
        """A llama_context with default params overridden by name."""
        params = llama_cpp.llama_context_default_params()
        for name, value in overrides.items():
            setattr(params, name, value)
        ctx = llama_cpp.llama_init_from_model(self.ptr, params)
        if not ctx:
            raise InsufficientMemory(
                f"llama.cpp could not create a context of {overrides.get('n_ctx')} tokens for "
                f"{self.path.name} (not enough memory); try a smaller --ctx-size or --parallel",
                param="model",
            )
        return ctx
