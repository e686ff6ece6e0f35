"""Draft tokens for speculative decoding; the worker verifies them in its one batched decode.

Two drafters: prompt lookup (the tokens that followed the last occurrence of the current n-gram
in the sequence's own history; free, and strong when output copies input) and a small draft
model sharing the target's vocabulary. Verification samples every position with the sequence's
own sampler and keeps drafts while they match, so the output is exactly what decoding one token
at a time would give."""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp
import numpy as np

from hearth.engine.llamacpp.native import NativeModel
from hearth.engine.tokens import common_prefix
from hearth.errors import InvalidModelFile


class DraftModel:
    """A small model with the target's vocabulary, one sequence per target sequence."""

    def __init__(
        self,
        path: Path,
        *,
        n_seq: int,
        ctx_size: int,
        threads: int,
        target: NativeModel,
        p_min: float = 0.6,
    ):
        self.model = NativeModel(path)
        if self.model.n_vocab != target.n_vocab or any(
            self.model.piece(t) != target.piece(t) for t in range(min(256, target.n_vocab))
        ):
            self.model.close()
            raise InvalidModelFile(
                f"draft model {path.name} does not share the target model's vocabulary",
                param="draft_model",
            )
        self.ctx = self.model.new_context(
            n_ctx=ctx_size * n_seq,
            n_batch=512,
            n_ubatch=512,
            n_seq_max=n_seq,
            n_threads=threads,
            n_threads_batch=threads,
            kv_unified=False,
            no_perf=True,
        )
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)
        self.greedy = llama_cpp.llama_sampler_init_greedy()
        self.cached: list[list[int]] = [[] for _ in range(n_seq)]
        self.p_min = p_min

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.greedy)
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        self.model.close()

    def propose(self, histories: dict[int, list[int]], max_len: int) -> dict[int, list[int]]:
        """Greedy drafts of up to max_len tokens for each sequence, decoded together."""
        drafts: dict[int, list[int]] = {seq: [] for seq in histories}
        pending: dict[int, list[int]] = {}
        for seq, history in histories.items():
            cached = self.cached[seq]
            keep = min(common_prefix(cached, history), len(history) - 1)
            if keep < len(cached):
                llama_cpp.llama_memory_seq_rm(self.mem, seq, keep, -1)
                del cached[keep:]
            pending[seq] = history[keep:]
        for _ in range(max_len):
            idx = self._decode(pending)
            if not idx:
                break
            pending = {}
            for seq, i in idx.items():
                token = llama_cpp.llama_sampler_sample(self.greedy, self.ctx, i)
                drafts[seq].append(token)
                # Stop drafting once the draft model is unsure: a likely rejection costs a
                # draft decode and a wasted verify slot.
                if len(drafts[seq]) < max_len and self._confidence(i) >= self.p_min:
                    pending[seq] = [token]
        return drafts

    def _confidence(self, idx: int) -> float:
        """Probability the draft model gives its own greedy choice at batch index idx."""
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, idx)
        logits = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.model.n_vocab,)
        )
        return float(1.0 / np.exp(logits - logits.max()).sum())

    def _decode(self, pending: dict[int, list[int]]) -> dict[int, int]:
        """Feed each sequence's pending tokens (in chunks); the index of each one's last logits."""
        last: dict[int, int] = {}
        queue = {seq: list(tokens) for seq, tokens in pending.items() if tokens}
        b = self.batch
        while queue:
            n = 0
            for seq in list(queue):
                tokens = queue[seq]
                take = min(len(tokens), 512 - n)
                if take <= 0:
                    break
                cached = self.cached[seq]
                for j in range(take):
                    b.token[n] = tokens[j]
                    b.pos[n] = len(cached) + j
                    b.n_seq_id[n] = 1
                    b.seq_id[n][0] = seq
                    b.logits[n] = 1 if j == len(tokens) - 1 else 0
                    n += 1
                cached.extend(tokens[:take])
                if take == len(tokens):
                    last[seq] = n - 1
                    del queue[seq]
                else:
                    queue[seq] = tokens[take:]
            b.n_tokens = n
            if llama_cpp.llama_decode(self.ctx, b) != 0:
                for seq in [*queue, *last]:
                    llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)
                    self.cached[seq].clear()
                return {}
            if queue:  # logits of earlier chunks are overwritten by the next decode
                last = {s: i for s, i in last.items() if s not in queue}
                if last:
                    return last
        return last
