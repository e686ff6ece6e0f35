"""A prompt cache in host RAM: KV states of sequences that were about to be overwritten.

When a sequence is taken for an unrelated prompt, its KV state is copied out
(llama_state_seq_get_data) and kept here, keyed by its tokens; a later prompt that starts with
those tokens restores it (llama_state_seq_set_data) instead of recomputing them. Bounded in
bytes, least recently used first out."""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import llama_cpp

from hearth.engine.tokens import common_prefix

# Saving a short prefix costs more than recomputing it.
MIN_TOKENS = 64


@dataclass(slots=True)
class CacheEntry:
    tokens: list[int]
    state: Any  # a ctypes uint8 array
    n_bytes: int


class PromptCache:
    """LRU of saved sequence states. Used only from the worker thread."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()
        self._next = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def best(self, prompt: list[int]) -> tuple[CacheEntry | None, int]:
        """The entry sharing the longest prefix with the prompt, and that prefix's length."""
        best: CacheEntry | None = None
        best_len = 0
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, prompt)
            if n > best_len:
                best, best_len = entry, n
        return best, best_len

    def save(self, ctx: Any, seq: int, tokens: list[int]) -> bool:
        """Copy out a sequence's KV state, unless an entry already covers these tokens."""
        if len(tokens) < MIN_TOKENS or self.max_bytes <= 0:
            return False
        for key, entry in list(self._entries.items()):
            shared = common_prefix(entry.tokens, tokens)
            if shared == len(tokens):  # already saved (this or a longer continuation)
                self._entries.move_to_end(key)
                return False
            if shared == len(entry.tokens):  # the new state extends an old one: replace it
                self._drop(key)
        size = llama_cpp.llama_state_seq_get_size(ctx, seq)
        if size <= 0 or size > self.max_bytes:
            return False
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq)
        if written <= 0:
            return False
        while self._entries and self.used_bytes + written > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[self._next] = CacheEntry(list(tokens), buf, written)
        self._next += 1
        self.used_bytes += written
        return True

    def restore(self, ctx: Any, mem: Any, seq: int, entry: CacheEntry) -> bool:
        """Replace the sequence's KV with the entry's state."""
        llama_cpp.llama_memory_seq_rm(mem, seq, -1, -1)
        read = llama_cpp.llama_state_seq_set_data(ctx, entry.state, entry.n_bytes, seq)
        if read <= 0:
            llama_cpp.llama_memory_seq_rm(mem, seq, -1, -1)
            return False
        for key, value in self._entries.items():
            if value is entry:
                self._entries.move_to_end(key)
                break
        self.hits += 1
        return True

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.used_bytes -= entry.n_bytes

    def clear(self) -> None:
        self._entries.clear()
        self.used_bytes = 0
