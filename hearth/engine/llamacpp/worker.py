"""The batch loop of one model: one llama context, all its sequences decoded together.

Each step puts one token (plus any draft tokens to verify) for every generating sequence, then
prompt chunks of newly admitted requests, into one llama_batch (continuous batching). Steps run
on the process's one compute thread (compute.py), which also hands the worker its jobs and
embedding tasks; each step's events leave through one call of the sink."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import llama_cpp
import numpy as np

from hearth.engine.base import (
    ChoiceFinished,
    FinishReason,
    GenerationFinished,
    PromptProgress,
    SlotStatus,
    SpecMode,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from hearth.engine.detok import Utf8Stream
from hearth.engine.llamacpp.common import deliver_to_loops
from hearth.engine.llamacpp.embed import Embedder, EmbedTask
from hearth.engine.llamacpp.native import NativeModel
from hearth.engine.llamacpp.prompt_cache import MIN_TOKENS, PromptCache
from hearth.engine.llamacpp.sampler import GrammarSampler, build_chain, free_chain, new_seed
from hearth.engine.llamacpp.slots import Job, Slot
from hearth.engine.llamacpp.speculative import DraftModel
from hearth.engine.stops import StopMatcher
from hearth.engine.tokens import common_prefix
from hearth.errors import EngineError, HearthError, RequestCancelled

log = logging.getLogger("hearth.engine")

DRAFT_START = 4  # first draft window of a request; adapts per step up to its draft_max
# Tokens of embeddings decoded between two generation steps while requests generate: small
# enough that streams barely stall, large enough to pack many short inputs into one decode.
EMBED_BUDGET_BUSY = 128
# Prompts are read shortest first, and a step takes a further prompt only while it holds fewer
# prompt tokens than this: on CPU a prompt costs about linearly in its tokens, so a burst read
# one after another gets its median first token far sooner than read all in one step, at the
# cost of one step's fixed overhead per prompt.
PROMPT_PACK = 64
# A request waiting this long (queued, or its prompt unread) goes before shorter ones.
PROMPT_AGE_S = 30.0

Sink = Callable[[list[tuple["Job", Any]]], None]


@dataclass(frozen=True, slots=True)
class ContextConfig:
    ctx_size: int  # tokens one sequence may hold
    parallel: int
    batch_size: int
    ubatch_size: int
    threads: int
    threads_batch: int
    flash_attn: int
    type_k: int
    type_v: int
    kv_unified: bool
    cache_ram_bytes: int = 0
    speculative: SpecMode = "none"
    draft_max: int = 16
    pooling: str = "auto"  # embeddings


class Worker:
    """Owns one llama context; every compute on it happens on the compute thread."""

    def __init__(
        self,
        model: NativeModel,
        cfg: ContextConfig,
        draft: DraftModel | None = None,
        sink: Sink | None = None,
    ):
        self.model = model
        self.cfg = cfg
        self.ctx = model.new_context(
            n_ctx=cfg.ctx_size * cfg.parallel,
            n_batch=cfg.batch_size,
            n_ubatch=min(cfg.ubatch_size, cfg.batch_size),
            n_seq_max=cfg.parallel,
            n_threads=cfg.threads,
            n_threads_batch=cfg.threads_batch,
            flash_attn_type=cfg.flash_attn,
            type_k=cfg.type_k,
            type_v=cfg.type_v,
            kv_unified=cfg.kv_unified,
            no_perf=True,
        )
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(cfg.batch_size, 0, 1)
        self.draft = draft
        self.sink: Sink = sink or deliver_to_loops
        self.cache = PromptCache(cfg.cache_ram_bytes) if cfg.cache_ram_bytes > 0 else None
        self.slots = [Slot(i) for i in range(cfg.parallel)]
        self.pending: deque[Job] = deque()
        self.active: list[Job] = []
        self.embeds: deque[EmbedTask] = deque()
        self.embedder: Embedder | None = None  # opened by the first embeddings request
        self.out: list[tuple[Job, Any]] = []
        self.requests_served = 0
        self.decode_seconds = 0.0
        self.step_seconds = 0.0
        self.steps = 0
        self.draft_proposed = 0
        self.draft_accepted = 0
        self.embed_decodes = 0
        # Threads that ever ran a decode for this worker: always one (see compute.py).
        self.decode_threads: set[int] = set()
        # The share of --threads this worker may use: 1/share_wanted (set from elsewhere when
        # several engine processes compute at once), applied before the next decode.
        self.share_wanted = 1
        self._share = 1

    def free(self) -> None:
        """Free native memory; call once the compute thread has let the worker go."""
        llama_cpp.llama_batch_free(self.batch)
        for slot in self.slots:
            self._release(slot)
        if self.cache is not None:
            self.cache.clear()
        if self.draft is not None:
            self.draft.close()
        if self.embedder is not None:
            self.embedder.close()
        llama_cpp.llama_free(self.ctx)
        self.ctx = None

    def slot_status(self) -> list[SlotStatus]:
        out = []
        for s in self.slots:
            state: Literal["idle", "prompt", "generating"] = (
                "idle" if s.job is None else "generating" if s.phase == "generating" else "prompt"
            )
            out.append(SlotStatus(id=s.seq, state=state, cached_tokens=len(s.cached)))
        return out

    def queued(self) -> int:
        return len(self.pending)

    # -- on the compute thread ------------------------------------------------------------------

    def accept(self, item: Job | EmbedTask) -> None:
        if isinstance(item, EmbedTask):
            self.embeds.append(item)
        else:
            item.queued_at = time.monotonic()
            self.pending.append(item)

    def has_work(self) -> bool:
        return bool(self.active or self.pending or self.embeds)

    def run_step(self) -> None:
        """One generation step, then (if any are waiting) one embeddings decode."""
        if self.share_wanted != self._share:
            self._apply_share(self.share_wanted)
        if self.active or self.pending:
            try:
                self._step()
            except Exception as exc:  # a bug in the loop must not take the server down
                log.exception("engine step failed")
                for job in list(self.active):
                    self._fail(job, EngineError(f"engine step failed: {exc}"), reset_kv=True)
        if self.embeds:
            self._embed_step()
        self._flush()

    @property
    def threads_in_use(self) -> int:
        return self._threads()[0]

    def _threads(self) -> tuple[int, int]:
        """(threads, batch threads) for this worker's share of the cores."""
        share = self._share
        return max(1, self.cfg.threads // share), max(1, self.cfg.threads_batch // share)

    def _apply_share(self, share: int) -> None:
        """Decode with 1/share of the configured threads: OpenMP teams of processes that
        compute at once would otherwise outnumber the cores and spin against each other."""
        self._share = share
        n, n_batch = self._threads()
        contexts = [self.ctx]
        if self.embedder is not None:
            contexts.append(self.embedder.ctx)
        if self.draft is not None:
            contexts.append(self.draft.ctx)
        for ctx in contexts:
            llama_cpp.llama_set_n_threads(ctx, n, n_batch)

    def shutdown(self, err: HearthError) -> None:
        """Fail every job and embedding task still here."""
        for job in [*self.active, *self.pending]:
            self._fail(job, err, reset_kv=False)
        self.pending.clear()
        while self.embeds:
            self.embeds.popleft().done(err)
        self._flush()

    def _embed_step(self) -> None:
        task = self.embeds[0]
        try:
            if self.embedder is None:  # only models asked for embeddings pay for the context
                self.embedder = Embedder(
                    self.model,
                    ctx_size=self.cfg.ctx_size,
                    threads=self._threads()[1],  # embeddings decode whole batches
                    pooling=self.cfg.pooling,
                )
            budget = EMBED_BUDGET_BUSY if self.active or self.pending else self.cfg.ctx_size
            self.decode_threads.add(threading.get_ident())
            done = self.embedder.step(task, budget)
            self.embed_decodes += 1
        except Exception as exc:
            self.embeds.popleft()
            if not isinstance(exc, HearthError):
                log.exception("embedding failed")
                exc = EngineError(f"embedding failed: {exc}")
            task.done(exc)
            return
        if done:
            self.embeds.popleft()
            task.done(task.out)

    def _step(self) -> None:
        t0 = time.perf_counter()
        self._reap_cancelled()
        self._admit()
        self._make_drafts()
        n_tokens, to_sample, progressed = self._fill_batch()
        if n_tokens == 0:
            return
        self.batch.n_tokens = n_tokens
        self.decode_threads.add(threading.get_ident())
        t1 = time.perf_counter()
        rc = llama_cpp.llama_decode(self.ctx, self.batch)
        t2 = time.perf_counter()
        if rc != 0:
            self._decode_failed(rc, to_sample, progressed)
            return
        for slot in progressed:
            job = slot.job
            if job is not None:
                self.out.append((job, PromptProgress(slot.prompt_pos, len(job.request.prompt))))
        for slot in self._with_followers(to_sample):
            if slot.job is None:
                continue
            try:
                self._verify(slot)
            except HearthError as exc:
                self._fail(slot.job, exc, reset_kv=True)
            except Exception as exc:
                log.exception("sampling failed")
                self._fail(slot.job, EngineError(str(exc)), reset_kv=True)
        self.decode_seconds += t2 - t1
        self.step_seconds += time.perf_counter() - t0
        self.steps += 1

    # -- admission ------------------------------------------------------------------------------

    def _admit(self) -> None:
        for job in [j for j in self.pending if j.cancelled]:
            self.pending.remove(job)
            self._fail(job, RequestCancelled("cancelled while queued"), reset_kv=False)
        while self.pending:
            now = time.monotonic()
            job = min(self.pending, key=lambda j: _prompt_order(j, len(j.request.prompt), now))
            free = [s for s in self.slots if s.job is None]
            if len(free) < job.request.n:
                return
            self.pending.remove(job)
            try:
                self._place(job, free)
            except Exception as exc:  # e.g. a grammar llama.cpp refuses: fail this job only
                if not isinstance(exc, HearthError):
                    log.exception("admitting a request failed")
                    exc = EngineError(f"could not start the request: {exc}")
                self._fail(job, exc, reset_kv=True)

    def _place(self, job: Job, free: list[Slot]) -> None:
        req = job.request
        prompt = req.prompt
        best_len, primary = max(
            ((common_prefix(s.cached, prompt), s) for s in free), key=lambda x: x[0]
        )
        if self.cache is not None:
            entry, entry_len = self.cache.best(prompt)
            if entry is not None and entry_len > best_len + MIN_TOKENS // 2:
                # A saved state beats every live sequence: restore it into the free sequence
                # whose own cache is worth least.
                primary = min(free, key=lambda s: len(s.cached))
                self._save(primary, keep=0)
                primary.cached = (
                    list(entry.tokens)
                    if self.cache.restore(self.ctx, self.mem, primary.seq, entry)
                    else []
                )
        keep = min(common_prefix(primary.cached, prompt), len(prompt) - 1)
        self._save(primary, keep)
        keep = self._trim(primary, keep)
        job.cached_tokens = keep
        donor, share_at = self._donor(prompt, keep)
        # Followers (n > 1) take the free slots whose caches are least worth keeping.
        others = sorted((s for s in free if s is not primary), key=lambda s: len(s.cached))
        chosen = [primary, *others[: req.n - 1]]
        seed = req.sampling.seed if req.sampling.seed is not None else new_seed()
        spec = req.speculative or self.cfg.speculative
        if spec == "draft" and self.draft is None:
            spec = "none"
        for local, slot in enumerate(chosen):
            # Choice indexes (and so seeds) count across all of a request's groups: with a
            # seed, every choice samples differently, and the same request repeats.
            index = job.first_index + local
            if slot is not primary:
                self._save(slot, keep=0)
                self._trim(slot, 0)
            slot.job = job
            slot.index = index
            slot.phase = "follow" if slot is not primary else "wait" if donor else "prompt"
            slot.donor = donor if slot is primary else None
            slot.share_at = share_at
            slot.prompt_pos = keep if slot is primary else 0
            slot.n_generated = 0
            slot.max_tokens = req.max_tokens or self.cfg.ctx_size - len(prompt)
            slot.next_token = -1
            slot.batch_idx = -1
            slot.n_verify = 1
            free_chain(slot.sampler)
            slot.sampler = build_chain(req.sampling, self.model.n_vocab, (seed + index) % 2**32)
            if slot.grammar is not None:
                slot.grammar.free()
            slot.grammar = (
                GrammarSampler(self.model.vocab, self.model.n_vocab, req.grammar, req.sampling)
                if req.grammar
                else None
            )
            slot.decoder = Utf8Stream()
            slot.stops = StopMatcher(req.stop)
            slot.pending_logprobs = []
            slot.spec = spec
            slot.draft_max = req.draft_max or self.cfg.draft_max
            slot.draft_len = min(slot.draft_max, DRAFT_START)
            slot.draft = []
            slot.ngram.reset()
        self.active.append(job)

    def _donor(self, prompt: list[int], keep: int) -> tuple[Slot | None, int]:
        """A busy sequence whose prompt shares more with this one than the `keep` tokens it
        starts with, by enough to be worth a KV copy, and how far: the new request waits for
        it to get there instead of computing the same tokens twice. Agent sessions started
        together share a system prompt and tool list of thousands of tokens."""
        best: Slot | None = None
        reach = keep + MIN_TOKENS
        for slot in self.slots:
            if slot.job is None:
                continue
            if slot.phase == "prompt":
                shared = common_prefix(slot.job.request.prompt, prompt)
            elif slot.phase == "generating":
                shared = common_prefix(slot.cached, prompt)
            else:
                continue
            shared = min(shared, len(prompt) - 1)  # the last token is decoded for its logits
            if shared >= reach:
                best, reach = slot, shared
        return best, reach

    def _take_shared(self) -> None:
        """Waiting sequences whose donor has read their shared prefix (or never will) copy its
        KV and go on with the rest of their prompt."""
        for slot in self.slots:
            donor = slot.donor
            if slot.phase != "wait" or donor is None or slot.job is None:
                continue
            prompt = slot.job.request.prompt
            have = min(common_prefix(donor.cached, prompt), slot.share_at)
            on_its_way = (
                have < slot.share_at
                and donor.phase == "prompt"
                and donor.job is not None
                and common_prefix(donor.job.request.prompt, prompt) >= slot.share_at
            )
            if on_its_way:
                continue
            slot.donor = None
            slot.phase = "prompt"
            if have - slot.prompt_pos < MIN_TOKENS:
                continue  # its own cached start will do
            # Copies between streams take whole sequences: copy, then drop the donor's tail.
            llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            llama_cpp.llama_memory_seq_cp(self.mem, donor.seq, slot.seq, -1, -1)
            slot.cached = list(donor.cached)
            slot.prompt_pos = slot.job.cached_tokens = self._trim(slot, have)

    def _save(self, slot: Slot, keep: int) -> None:
        """Before a sequence drops many cached tokens, copy its state to the RAM cache."""
        if self.cache is not None and len(slot.cached) - keep >= MIN_TOKENS:
            self.cache.save(self.ctx, slot.seq, slot.cached)

    def _trim(self, slot: Slot, keep: int) -> int:
        """Drop the slot's cached tokens past `keep`; returns how many really stay."""
        if keep > 0 and self.model.n_swa > 0:
            # A sliding-window cache forgets old positions; reuse only if the window is intact.
            pos_min = llama_cpp.llama_memory_seq_pos_min(self.mem, slot.seq)
            if pos_min > max(0, keep - self.model.n_swa):
                keep = 0
        if keep < len(slot.cached) and not llama_cpp.llama_memory_seq_rm(
            self.mem, slot.seq, keep, -1
        ):
            keep = 0
        if keep == 0:
            llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        del slot.cached[keep:]
        return keep

    # -- one decode step -------------------------------------------------------------------------

    def _make_drafts(self) -> None:
        """Draft tokens for generating sequences that speculate; verified in this step's batch."""
        budget = self.cfg.batch_size
        want_model: dict[int, list[int]] = {}
        longest = 0
        # The history a draft continues is `cached` plus the token fed next: appended in place
        # (no copy of the whole context per step) and taken back once the drafts are made.
        extended: list[Slot] = []
        try:
            for slot in self.slots:
                if slot.draft:
                    slot.draft = []
                if slot.phase != "generating" or slot.spec == "none" or slot.next_token < 0:
                    continue
                room = min(
                    slot.max_tokens - slot.n_generated - 1,
                    self.cfg.ctx_size - len(slot.cached) - 2,
                    slot.draft_len,
                    budget // max(1, len(self.slots)) - 1,
                )
                if room <= 0:
                    continue
                slot.cached.append(slot.next_token)
                extended.append(slot)
                if slot.spec == "ngram":
                    slot.draft = slot.ngram.propose(slot.cached, room)
                else:
                    want_model[slot.seq] = slot.cached
                    longest = max(longest, room)
            if want_model and self.draft is not None:
                drafts = self.draft.propose(want_model, longest)
                for slot in self.slots:
                    if slot.seq in drafts:
                        room = min(slot.draft_len, slot.max_tokens - slot.n_generated - 1)
                        slot.draft = drafts[slot.seq][: max(0, room)]
        finally:
            for slot in extended:
                slot.cached.pop()

    def _fill_batch(self) -> tuple[int, list[Slot], list[Slot]]:
        self._take_shared()
        b = self.batch
        tok, pos, nseq, seqs, logits = b.token, b.pos, b.n_seq_id, b.seq_id, b.logits
        n = 0
        to_sample: list[Slot] = []
        prompting: list[Slot] = []
        for slot in self.slots:
            if slot.phase == "generating" and slot.next_token >= 0:
                slot.batch_idx = n
                slot.n_verify = 1 + len(slot.draft)
                cached = slot.cached
                start = len(cached)
                cached.append(slot.next_token)
                cached.extend(slot.draft)  # trimmed back after verification
                for i in range(start, len(cached)):
                    tok[n] = cached[i]
                    pos[n] = i
                    nseq[n] = 1
                    seqs[n][0] = slot.seq
                    logits[n] = 1
                    n += 1
                slot.next_token = -1
                to_sample.append(slot)
            elif slot.phase == "prompt":
                prompting.append(slot)
        if not prompting:
            return n, to_sample, []
        budget = self.cfg.batch_size - n
        progressed: list[Slot] = []
        now = time.monotonic()
        prompting.sort(key=lambda s: _slot_order(s, now))
        taken = 0
        for slot in prompting:
            if budget <= 0 or taken >= PROMPT_PACK:
                break
            job = slot.job
            assert job is not None
            prompt = job.request.prompt
            start = slot.prompt_pos
            take = min(budget, len(prompt) - start)
            # A chunk ends where a waiting sequence's shared prefix does: it copies exactly
            # that (a sliding-window cache keeps only the last positions it read).
            ends = [w.share_at for w in self.slots if w.donor is slot and w.share_at > start]
            if ends:
                take = min(take, min(ends) - start)
            last = len(prompt) - 1
            for i in range(start, start + take):
                tok[n] = prompt[i]
                pos[n] = i
                nseq[n] = 1
                seqs[n][0] = slot.seq
                logits[n] = 1 if i == last else 0
                n += 1
            slot.cached.extend(prompt[start : start + take])
            slot.prompt_pos = start + take
            budget -= take
            taken += take
            if slot.prompt_pos == len(prompt):
                slot.batch_idx = n - 1
                slot.n_verify = 1
                to_sample.append(slot)
            else:
                progressed.append(slot)
        return n, to_sample, progressed

    def _with_followers(self, to_sample: list[Slot]) -> list[Slot]:
        """A finished prompt is shared with its job's other choices (n > 1): KV and logits."""
        out = []
        for primary in to_sample:
            out.append(primary)
            if primary.phase != "prompt":
                continue
            primary.phase = "generating"
            for slot in self.slots:
                if slot.job is primary.job and slot.phase == "follow":
                    llama_cpp.llama_memory_seq_cp(self.mem, primary.seq, slot.seq, -1, -1)
                    slot.cached = list(primary.cached)
                    slot.batch_idx = primary.batch_idx
                    slot.n_verify = 1
                    slot.phase = "generating"
                    out.append(slot)
        return out

    def _verify(self, slot: Slot) -> None:
        """Sample each verified position in turn; keep drafts while they match the samples.

        Every position is sampled with the sequence's own chain, exactly as one-token-at-a-time
        decoding would, so speculation never changes the output, only its speed."""
        job = slot.job
        assert job is not None
        draft = slot.draft
        base = len(slot.cached) - slot.n_verify + 1  # KV length once the fed token is counted
        accepted = 0
        for i in range(slot.n_verify):
            idx = slot.batch_idx + i
            if slot.grammar is not None:
                token = slot.grammar.sample(slot.sampler, self.ctx, idx)
            else:
                token = llama_cpp.llama_sampler_sample(slot.sampler, self.ctx, idx)
            if self._take(slot, token, idx, kv_len=base + i):
                break  # finished: the choice is over
            if i < len(draft) and token == draft[i]:
                accepted += 1
                continue
            slot.next_token = token
            break
        if draft:
            # On CPU each verified position costs ~0.6 of a one-token step, so a long draft
            # that fails early loses time: grow the window while drafts hold, shrink it to
            # what held when they don't.
            if accepted == len(draft):
                slot.draft_len = min(slot.draft_max, 2 * slot.draft_len)
            else:
                slot.draft_len = max(1, accepted)
            job.draft_proposed += len(draft)
            job.draft_accepted += accepted
            self.draft_proposed += len(draft)
            self.draft_accepted += accepted
        valid = base + accepted
        if len(slot.cached) > valid:
            # Rejected drafts leave cells behind: drop them so the KV matches `cached`.
            llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, valid, -1)
            del slot.cached[valid:]
        self._send_text(slot)

    def _take(self, slot: Slot, token: int, idx: int, kv_len: int) -> bool:
        """One sampled token: text, stop strings, limits. True when the choice finished.

        kv_len is how many real tokens the sequence holds before this one is fed."""
        job = slot.job
        assert job is not None
        req = job.request
        if not req.ignore_eos and self.model.is_eog(token):
            self._finish(slot, "stop", flush=True)  # the end marker is not part of the output
            return True
        slot.n_generated += 1
        if req.logprobs is not None:
            slot.pending_logprobs.append(self._logprob(idx, token, req.logprobs))
        text = slot.decoder.feed(self.model.piece(token, special=token in req.keep_special))
        emit, stopped = slot.stops.feed(text) if text else ("", False)
        if emit:
            slot.out_text.append(emit)
            if not stopped and slot.pending_logprobs:
                slot.out_logprobs.extend(slot.pending_logprobs)
                slot.pending_logprobs.clear()
        if stopped:
            slot.pending_logprobs.clear()  # the tokens that spelled the stop string are not output
            self._finish(slot, "stop", flush=False)
            return True
        if slot.n_generated >= slot.max_tokens or kv_len >= self.cfg.ctx_size:
            self._finish(slot, "length", flush=True)
            return True
        return False

    def _send_text(self, slot: Slot) -> None:
        """This step's text for the slot, as one delta."""
        job = slot.job
        if job is not None and (slot.out_text or slot.out_logprobs):
            lps = None
            if job.request.logprobs is not None:
                lps, slot.out_logprobs = slot.out_logprobs, []  # the delta keeps this list
            self.out.append((job, TextDelta(slot.index, "".join(slot.out_text), lps)))
        slot.out_text.clear()
        if slot.out_logprobs:
            slot.out_logprobs = []

    def _logprob(self, idx: int, token: int, top_n: int) -> TokenLogprob:
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, idx)
        logits = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.model.n_vocab,)
        )
        peak = float(logits.max())
        log_z = peak + float(np.log(np.exp(logits - peak).sum()))
        top: list[TopLogprob] = []
        if top_n > 0:
            ids = np.argpartition(logits, -top_n)[-top_n:]
            ids = ids[np.argsort(-logits[ids])]
            for t in ids.tolist():
                piece = self.model.piece(t)
                top.append(
                    TopLogprob(
                        piece.decode("utf-8", "replace"), float(logits[t]) - log_z, list(piece)
                    )
                )
        piece = self.model.piece(token)
        return TokenLogprob(
            piece.decode("utf-8", "replace"), float(logits[token]) - log_z, list(piece), top
        )

    # -- endings ---------------------------------------------------------------------------------

    def _finish(self, slot: Slot, reason: FinishReason, *, flush: bool) -> None:
        job = slot.job
        assert job is not None
        if flush:
            tail = slot.stops.flush() + slot.decoder.flush()
            if tail:
                slot.out_text.append(tail)
            slot.out_logprobs.extend(slot.pending_logprobs)
            slot.pending_logprobs = []
        self._send_text(slot)
        stop = slot.stops.matched if reason == "stop" else None
        self.out.append((job, ChoiceFinished(slot.index, reason, slot.n_generated, stop)))
        job.completion_tokens += slot.n_generated
        self._release(slot)
        job.open_choices -= 1
        if job.open_choices == 0:
            usage = Usage(
                len(job.request.prompt),
                job.completion_tokens,
                job.cached_tokens,
                job.draft_proposed,
                job.draft_accepted,
            )
            self.out.append((job, GenerationFinished(usage)))
            job.finished = True
            self.active.remove(job)
            self.requests_served += 1

    def _release(self, slot: Slot) -> None:
        free_chain(slot.sampler)
        slot.sampler = None
        if slot.grammar is not None:
            slot.grammar.free()
            slot.grammar = None
        slot.job = None
        slot.phase = "idle"
        slot.donor = None
        slot.next_token = -1
        slot.batch_idx = -1
        slot.pending_logprobs = []

    def _fail(self, job: Job, error: HearthError, *, reset_kv: bool) -> None:
        """End a job with an error. Its cached tokens stay reusable unless a decode failed."""
        for slot in self.slots:
            if slot.job is job:
                if reset_kv:
                    llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
                    slot.cached.clear()
                slot.out_text = []
                slot.out_logprobs = []
                self._release(slot)
        if job in self.active:
            self.active.remove(job)
        job.finished = True
        self.out.append((job, error))

    def _reap_cancelled(self) -> None:
        for job in [j for j in self.active if j.cancelled]:
            self._fail(job, RequestCancelled("the request was cancelled"), reset_kv=False)

    def _decode_failed(self, rc: int, to_sample: list[Slot], progressed: list[Slot]) -> None:
        reason = "no room left in the KV cache" if rc == 1 else f"llama_decode returned {rc}"
        jobs = {id(s.job): s.job for s in [*to_sample, *progressed] if s.job is not None}
        for job in jobs.values():
            self._fail(job, EngineError(f"decoding failed: {reason}"), reset_kv=True)

    def _flush(self) -> None:
        if self.out:
            out, self.out = self.out, []
            self.sink(out)


def _slot_order(slot: Slot, now: float) -> tuple[int, float]:
    job = slot.job
    assert job is not None
    return _prompt_order(job, len(job.request.prompt) - slot.prompt_pos, now)


def _prompt_order(job: Job, remaining: int, now: float) -> tuple[int, float]:
    """Shortest prompt first; one that has waited PROMPT_AGE_S goes first, oldest first."""
    if now - job.queued_at >= PROMPT_AGE_S:
        return 0, job.queued_at
    return 1, remaining
