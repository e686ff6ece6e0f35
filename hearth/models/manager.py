"""Loaded models and their lifecycle.

A model loads on its first request (concurrent first requests share one load) and stays while
requests hold a lease on it; when the last lease goes, its keep-alive timer starts (Ollama's
meaning: 0 unloads at once, infinity never). Loads are bounded by a count and a memory budget:
when a load would exceed them, the least recently used idle model is unloaded first. A model
with a lease out is never evicted: the new load waits for one to go idle, and after
`wait_timeout` seconds the request gets a 503 with Retry-After."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hearth.chat.template import ChatTemplate
from hearth.engine.base import Engine
from hearth.errors import EngineError, HearthError, ModelFailed, NoCapacity
from hearth.models.lease import Lease
from hearth.models.registry import ModelEntry, Registry

log = logging.getLogger("hearth.models")

EngineFactory = Callable[[ModelEntry], Engine]
Estimator = Callable[[ModelEntry], int]
UnloadStatus = Literal["unloaded", "unloading", "not_loaded"]
# A model whose engine crashes this often within CRASH_WINDOW seconds is refused until it is
# loaded explicitly: restarting it for every request would only crash it again.
CRASH_LIMIT = 3
CRASH_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    """How many models may be loaded at once and for how long they stay."""

    max_loaded: int = 3
    memory_budget: int | None = None  # bytes; None: no limit
    keep_alive: float = 300.0  # seconds idle before unloading; math.inf: never
    wait_timeout: float = 60.0  # seconds a load waits for a busy model to go idle


@dataclass(eq=False, slots=True)
class LoadedModel:
    """A model ready to serve: its engine, its chat template and its lifecycle state."""

    entry: ModelEntry
    engine: Engine
    template: ChatTemplate
    memory_bytes: int = 0
    keep_alive: float = 300.0
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    expires_at: float | None = None  # wall-clock time of the planned unload, if any
    timer: asyncio.TimerHandle | None = None

    @property
    def sampling(self) -> dict[str, float | int]:
        """Sampling defaults configured for this model (they win over the GGUF's)."""
        return self.entry.config.sampling.as_dict() if self.entry.config else {}

    @property
    def system_prompt(self) -> str | None:
        """The configured default system prompt, used when a request sends none."""
        return self.entry.config.system_prompt if self.entry.config else None


class ModelManager:
    """Owns every loaded engine; the only place that loads, evicts or closes one."""

    def __init__(
        self,
        registry: Registry,
        factory: EngineFactory,
        *,
        chat_template_file: Path | None = None,
        policy: Policy | None = None,
        estimate: Estimator | None = None,
    ):
        self.registry = registry
        self.factory = factory
        self.chat_template_file = chat_template_file
        self.policy = policy or Policy()
        self.estimate = estimate or (lambda entry: entry.size_bytes)
        self.load_errors: dict[str, str] = {}
        self.crashes: dict[str, str] = {}  # id -> why its last engine died (until reloaded)
        self.restarts: collections.Counter[str] = collections.Counter()  # crashes since start
        self.load_seconds: dict[str, float] = {}  # id -> how long its last load took
        self.failed: dict[str, str] = {}  # id -> why it is refused until loaded explicitly
        self._crash_times: dict[str, deque[float]] = {}
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}
        self._upstream_loads: set[str] = set()  # loads of upstream models (no room needed)
        self._reserved: dict[str, int] = {}  # memory of the loads under way
        self._closing: set[asyncio.Task[None]] = set()
        self._pins: Counter[str] = Counter()  # leases out (or waiting for a load), per id
        self._forever: set[str] = set()
        self._changed: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- using models ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(self, model: str, keep_alive: float | None = None) -> AsyncIterator[Lease]:
        """A lease on the model for one request; `lease.hold(stream)` extends it to a stream."""
        lease = await self.acquire(model, keep_alive)
        async with lease:
            yield lease

    async def acquire(
        self, model: str, keep_alive: float | None = None, *, explicit: bool = False
    ) -> Lease:
        """Load the model if needed and pin it until the lease is released. The request's
        keep_alive (else the model's default) applies once the model is idle again.
        `explicit` (a load asked for by name) also lifts a `failed` mark."""
        lease = await self._pin(model, explicit=explicit)
        entry = lease.model.entry
        if entry.upstream:  # nothing of it is here to free: never unloaded for idleness
            keep_alive = None
        lease.model.keep_alive = (
            keep_alive if keep_alive is not None else self.default_keep_alive(entry)
        )
        return lease

    async def get(self, model: str) -> LoadedModel:
        """The loaded model for an id or alias, loading it first if needed. Keeps no lease
        and leaves the keep-alive as it is (the caller's lease, if any, set it)."""
        lease = await self._pin(model)
        lease.release()
        return lease.model

    async def _pin(self, model: str, *, explicit: bool = False) -> Lease:
        self._loop = asyncio.get_running_loop()
        entry = self._known_loaded(model) or self.registry.get(model)
        model_id = entry.id
        if model_id in self.failed:
            if not explicit:
                raise ModelFailed(
                    f"the model '{model_id}' is not served: {self.failed[model_id]}; "
                    "load it explicitly (POST /api/load) to try again"
                )
            del self.failed[model_id]
            self._crash_times.pop(model_id, None)
        self._pins[model_id] += 1
        try:
            loaded = await self._ensure_loaded(entry)
        except BaseException:
            self._unpin(model_id)
            raise
        self._cancel_timer(loaded)
        loaded.last_used = time.monotonic()
        return Lease(loaded, self._on_release)

    async def load(self, model: str, keep_alive: float | None = None) -> LoadedModel:
        """Load explicitly; the keep-alive timer starts at once."""
        async with await self.acquire(model, keep_alive, explicit=True) as lease:
            return lease.model

    async def unload(self, model: str, *, force: bool = False) -> tuple[str, UnloadStatus]:
        """(id, 'unloaded'), (id, 'not_loaded'), or (id, 'unloading') for a busy model, which
        goes when its requests end. With force, a busy model goes now and its requests fail."""
        entry = self._known_loaded(model) or self.registry.get(model)
        task = self._loading.get(entry.id)
        if task is not None:
            with contextlib.suppress(HearthError):
                await asyncio.shield(task)
        loaded = self._loaded.get(entry.id)
        if loaded is None:
            return entry.id, "not_loaded"
        if self._pins[entry.id] and not force:
            loaded.keep_alive = 0.0  # the last lease to go unloads it
            return entry.id, "unloading"
        await self._start_eviction(loaded, "unloaded on request")
        return entry.id, "unloaded"

    def keep_forever(self, model_id: str) -> None:
        """Models named at start-up stay loaded unless a request or the config says otherwise."""
        self._forever.add(model_id)

    def default_keep_alive(self, entry: ModelEntry) -> float:
        """The model's configured keep-alive, else forever for start-up models, else the
        server's default."""
        configured = entry.config.keep_alive_seconds if entry.config else None
        if configured is not None:
            return configured
        if entry.upstream:  # nothing of it is here to free
            return math.inf
        return math.inf if entry.id in self._forever else self.policy.keep_alive

    # -- state ----------------------------------------------------------------------------------

    def loaded(self) -> list[LoadedModel]:
        """Models in memory, most recently used first."""
        return sorted(self._loaded.values(), key=lambda m: m.last_used, reverse=True)

    def is_loaded(self, model_id: str) -> bool:
        """True while the model is in memory."""
        return model_id in self._loaded

    def is_loading(self, model_id: str | None = None) -> bool:
        """True while that model (or, without an id, any model) is loading."""
        return bool(self._loading) if model_id is None else model_id in self._loading

    def loading_ids(self) -> list[str]:
        """Ids of the models being loaded right now."""
        return sorted(self._loading)

    def active(self, model_id: str) -> int:
        """Requests holding (or waiting for) this model."""
        return self._pins[model_id]

    def memory_in_use(self) -> int:
        """Estimated bytes of the loaded models and the loads under way."""
        return sum(m.memory_bytes for m in self._loaded.values()) + sum(self._reserved.values())

    async def close(self) -> None:
        """Cancel loads, unload everything, wait for the engines to close."""
        for task in list(self._loading.values()):
            task.cancel()
        for loaded in list(self._loaded.values()):
            self._cancel_timer(loaded)
            await asyncio.to_thread(loaded.engine.close)
        self._loaded.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # -- loading and eviction -------------------------------------------------------------------

    def _known_loaded(self, model: str) -> ModelEntry | None:
        """A loaded model's entry by id or alias, without a disk scan."""
        wanted = model.strip().lower()
        loaded = self._loaded.get(wanted)
        if loaded is None:
            loaded = next((m for m in self._loaded.values() if wanted in m.entry.aliases), None)
        return loaded.entry if loaded is not None else None

    async def _ensure_loaded(self, entry: ModelEntry) -> LoadedModel:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.wait_timeout
        while True:
            loaded = self._loaded.get(entry.id)
            if loaded is not None:
                return loaded
            task = self._loading.get(entry.id)
            if task is None:
                # The files as they are now (one stat each): nothing is evicted for a model
                # whose file went bad since the scan.
                entry = self.registry.checked(entry)
                # An upstream model takes no room here: nothing is evicted for it.
                need = 0 if entry.upstream else self.estimate(entry)
                victims = [] if entry.upstream else self._plan_room(need)
                if victims is not None:
                    if entry.upstream:
                        self._upstream_loads.add(entry.id)
                    for victim in victims:
                        self._start_eviction(victim, f"to make room for {entry.id}")
                    self._reserved[entry.id] = need
                    task = asyncio.create_task(self._load(entry, need), name=f"load {entry.id}")
                    self._loading[entry.id] = task
            if task is not None:
                # Shielded: a caller that goes away does not abort a load others may wait on.
                await asyncio.shield(task)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                busy = ", ".join(sorted(m for m in self._loaded if self._pins[m])) or "none"
                raise NoCapacity(
                    f"cannot load '{entry.id}': the loaded models are busy ({busy}) and there is "
                    f"no room for another (--max-loaded-models {self.policy.max_loaded}, "
                    f"--max-memory); waited {self.policy.wait_timeout:g}s. Retry later."
                )
            await self._wait_for_change(remaining)

    def _plan_room(self, need: int) -> list[LoadedModel] | None:
        """Idle models to evict (least recently used first) so a model of `need` bytes fits;
        None if only busy models stand in the way."""
        # Upstream models hold no memory here and never stand in a local model's way.
        local = [m for m in self._loaded.values() if not m.entry.upstream]
        count = len(local) + sum(1 for i in self._loading if i not in self._upstream_loads)
        used = self.memory_in_use()
        budget = self.policy.memory_budget
        idle = sorted(
            (m for m in local if not self._pins[m.entry.id]),
            key=lambda m: m.last_used,
        )
        victims: list[LoadedModel] = []
        while count >= self.policy.max_loaded or (budget is not None and used + need > budget):
            if idle:
                victim = idle.pop(0)
                victims.append(victim)
                count -= 1
                used -= victim.memory_bytes
            elif count == 0:
                log.warning(
                    "a model needs ~%d MiB, over the memory budget; loading it alone", need >> 20
                )
                break
            else:
                return None
        return victims

    async def _load(self, entry: ModelEntry, need: int) -> LoadedModel:
        log.info("loading %s from %s", entry.id, entry.path)
        started = time.perf_counter()
        try:
            if self._closing:  # let evicted models free their memory first
                await asyncio.gather(*list(self._closing), return_exceptions=True)
            entry, engine = await asyncio.to_thread(self._open, entry)
            try:
                template = self._template(entry, engine)
            except BaseException:
                await asyncio.to_thread(engine.close)
                raise
        except HearthError as exc:
            self.load_errors[entry.id] = exc.message
            raise
        except Exception as exc:  # not the file's fault as far as anyone knows: a 500
            log.exception("loading %s failed", entry.id)
            self.load_errors[entry.id] = str(exc)
            raise EngineError(f"cannot load model '{entry.id}': {exc}", param="model") from exc
        finally:
            self._loading.pop(entry.id, None)
            self._reserved.pop(entry.id, None)
            self._upstream_loads.discard(entry.id)
            self._notify()
        self.load_errors.pop(entry.id, None)
        self.crashes.pop(entry.id, None)
        loaded = LoadedModel(
            entry=entry,
            engine=engine,
            template=template,
            memory_bytes=need,
            keep_alive=self.default_keep_alive(entry),
        )
        self._loaded[entry.id] = loaded
        loop = asyncio.get_running_loop()

        def on_crash(reason: str) -> None:  # from the engine's reader thread
            loop.call_soon_threadsafe(self._crashed, loaded, reason)

        engine.watch(on_crash)
        engine.attach(loop)
        self.load_seconds[entry.id] = time.perf_counter() - started
        log.info("loaded %s in %.1fs", entry.id, self.load_seconds[entry.id])
        if not self._pins[entry.id]:  # everyone who wanted it went away meanwhile
            self._schedule_idle(loaded)
        return loaded

    def _open(self, entry: ModelEntry) -> tuple[ModelEntry, Engine]:
        """Check the files once more right before llama.cpp opens them (evicted engines may
        have taken a while to close): a file truncated meanwhile is a 422, not a crash."""
        entry = self.registry.checked(entry)
        return entry, self.factory(entry)

    def _template(self, entry: ModelEntry, engine: Engine) -> ChatTemplate:
        info = engine.info
        if entry.upstream:  # the upstream applies its own
            return ChatTemplate(None, bos_token="", eos_token="")
        cfg = entry.config
        template_file = (cfg.chat_template_file if cfg else None) or self.chat_template_file
        if cfg is not None and cfg.chat_template is not None:
            return ChatTemplate(
                cfg.chat_template, bos_token=info.bos_token, eos_token=info.eos_token
            )
        if template_file is not None:
            return ChatTemplate.from_file(
                template_file, bos_token=info.bos_token, eos_token=info.eos_token
            )
        return ChatTemplate(info.chat_template, bos_token=info.bos_token, eos_token=info.eos_token)

    def _start_eviction(self, loaded: LoadedModel, why: str) -> asyncio.Task[None]:
        """Take the model out of service now; its engine closes in the background."""
        self._cancel_timer(loaded)
        if self._loaded.get(loaded.entry.id) is loaded:
            del self._loaded[loaded.entry.id]
        log.info("unloading %s (%s)", loaded.entry.id, why)
        task = asyncio.create_task(self._close_engine(loaded), name=f"unload {loaded.entry.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    def _crashed(self, loaded: LoadedModel, reason: str) -> None:
        """A model's engine died: take it out of service; the next request starts a new one,
        unless it keeps crashing."""
        model_id = loaded.entry.id
        if self._loaded.get(model_id) is not loaded:
            return  # already unloaded
        self.crashes[model_id] = reason
        self.restarts[model_id] += 1
        times = self._crash_times.setdefault(model_id, deque())
        now = time.monotonic()
        times.append(now)
        while now - times[0] > CRASH_WINDOW:
            times.popleft()
        if len(times) >= CRASH_LIMIT:
            self.failed[model_id] = (
                f"its engine crashed {len(times)} times within {CRASH_WINDOW:g}s (last: {reason})"
            )
        self._start_eviction(loaded, f"its engine {reason}")

    async def _close_engine(self, loaded: LoadedModel) -> None:
        try:
            await asyncio.to_thread(loaded.engine.close)
        finally:
            self._notify()

    # -- leases and timers ----------------------------------------------------------------------

    def _on_release(self, loaded: LoadedModel) -> None:
        """Called when a lease ends, possibly from a finalizer outside the event loop."""
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._release, loaded)
            return
        self._release(loaded)

    def _release(self, loaded: LoadedModel) -> None:
        model_id = loaded.entry.id
        self._unpin(model_id)
        if self._loaded.get(model_id) is not loaded:
            return  # unloaded meanwhile (forced)
        loaded.last_used = time.monotonic()
        if not self._pins[model_id]:
            self._schedule_idle(loaded)
        self._notify()

    def _unpin(self, model_id: str) -> None:
        self._pins[model_id] -= 1
        if self._pins[model_id] <= 0:
            del self._pins[model_id]

    def _schedule_idle(self, loaded: LoadedModel) -> None:
        self._cancel_timer(loaded)
        if loaded.keep_alive == math.inf:
            return
        loaded.expires_at = time.time() + loaded.keep_alive
        loop = asyncio.get_running_loop()
        loaded.timer = loop.call_later(loaded.keep_alive, self._expire, loaded)

    def _cancel_timer(self, loaded: LoadedModel) -> None:
        if loaded.timer is not None:
            loaded.timer.cancel()
            loaded.timer = None
        loaded.expires_at = None

    def _expire(self, loaded: LoadedModel) -> None:
        loaded.timer = None
        if self._loaded.get(loaded.entry.id) is loaded and not self._pins[loaded.entry.id]:
            self._start_eviction(loaded, f"idle for {loaded.keep_alive:g}s")

    def _notify(self) -> None:
        """Wake every load waiting for a model to go idle or for memory to be freed."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    async def _wait_for_change(self, seconds: float) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed), seconds)
