"""ProcessEngine: one model's llama.cpp core in a supervised child process.

The child (child.py) holds the weights, the context and the batch loop; this side keeps the
requests. The child sends one message per decode step. Once the model manager attaches the
server's event loop, that loop reads them itself (no thread in between: on a small machine
every extra wake-up per token preempts a decode thread); until then, and for an engine used
without a loop, a reader thread does and hands each loop its events with one wake-up. The
server process runs no llama.cpp code at all: tokenizing, detokenizing and grammar checks are
calls that the child's command thread answers on a pipe of their own, read by the caller
(a fraction of a millisecond, even mid-decode). When the child dies, every request it was
serving fails with `engine_crashed`, the watchers hear of it, and nothing else is touched.

A child spends ~0.4 s importing llama-cpp-python and numpy, so a `ChildPool` keeps one spare
child started: a load takes it and starts the next one in the background."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hearth.engine.base import EngineStatus, GenerationFinished, GenerationRequest
from hearth.engine.llamacpp import ipc
from hearth.engine.llamacpp.common import (
    UNLOADED,
    EngineOptions,
    LlamaCppEngineBase,
    deliver_to_loops,
    settle,
)
from hearth.errors import EngineCrashed, EngineError, HearthError, ModelUnloaded

log = logging.getLogger("hearth.engine")
child_log = logging.getLogger("hearth.engine.child")

STOP_TIMEOUT = 10.0  # seconds a child gets to exit after Stop before it is killed
CALL_TIMEOUT = 30.0  # seconds a call may take (tokenizing a long text included)
SHORT_TEXT = 64  # texts up to this long have their tokens cached (markers, stop strings)
SHORT_CACHE = 4096  # how many such texts
_LEVELS = logging.getLevelNamesMapping()
TAIL_LINES = 8  # the child's last lines of output, shown with a crash


class RemoteJob:
    """One choice group running in the child, as generate() sees it."""

    __slots__ = ("engine", "finished", "key", "loop", "queue")

    def __init__(
        self,
        engine: ProcessEngine,
        key: int,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Any],
    ):
        self.engine = engine
        self.key = key
        self.loop = loop
        self.queue = queue
        self.finished = False

    def cancel(self) -> None:
        """Stop it in the child (within one step)."""
        self.engine._cancel(self)


def _child_command() -> list[str]:
    """How to start an engine child: this interpreter on the child module, or, in the
    frozen `hearth-server` binary, the binary itself (hearth.sidecar.main)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--engine-child"]
    return [sys.executable, "-m", "hearth.engine.llamacpp.child"]


class Child:
    """A started engine child and the server's ends of its pipes."""

    def __init__(self) -> None:
        cmd_r, cmd_w = os.pipe()
        rep_r, rep_w = os.pipe()
        ans_r, ans_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [*_child_command(), str(ans_w)],
                stdin=cmd_r,
                stdout=rep_w,
                stderr=subprocess.PIPE,
                pass_fds=(ans_w,),
                close_fds=True,  # no child holds another's pipe open (EOF ends it)
            )
        except BaseException:
            for fd in (cmd_w, rep_r, ans_r):
                os.close(fd)
            raise
        finally:
            for fd in (cmd_r, rep_w, ans_w):
                os.close(fd)
        self.commands = Connection(cmd_w, readable=False)
        self.replies = Connection(rep_r, writable=False)
        self.answers = Connection(ans_r, writable=False)

    def discard(self) -> None:
        """EOF on its stdin: an unused child exits by itself."""
        for conn in (self.commands, self.replies, self.answers):
            with contextlib.suppress(OSError):
                conn.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class ComputeShare:
    """Splits the cores between engine children that compute at the same time. Each child's
    OpenMP team is sized for the whole machine; two busy teams on the same cores spin against
    each other (half the combined speed, measured), so with k children busy each decodes with
    1/k of its threads. A child alone gets all of them back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[ProcessEngine] = set()

    def update(self, engine: ProcessEngine) -> None:
        """Count `engine` busy or idle as it is now. Its own state decides, read under this
        lock, so two updates racing from different threads cannot leave a stale count."""
        with self._lock:  # held while sending, so shares arrive in the order decided
            if engine.has_work():
                self._busy.add(engine)
            else:
                self._busy.discard(engine)
            share = max(1, len(self._busy))
            for other in self._busy:
                other.set_share(share)


class ChildPool:
    """Keeps one spare child started, so a load does not wait for its imports; and the
    share of the cores that busy children get."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: Child | None = None
        self._closed = False
        self.share = ComputeShare()

    def take(self) -> Child:
        """The spare child if it is still there, else a new one."""
        with self._lock:
            child, self._spare = self._spare, None
        if child is not None and child.proc.poll() is not None:
            child.discard()  # it died while waiting: close its pipes
            child = None
        return child if child is not None else Child()

    def refill(self) -> None:
        """Start the next spare; called once a load is done, so its imports do not compete
        with the load for the cores."""
        with self._lock:
            if self._spare is None and not self._closed:
                self._spare = Child()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()


def exit_reason(code: int) -> str:
    """A child's exit status in words: the signal that killed it, or its exit code."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class ProcessEngine(LlamaCppEngineBase):
    """A GGUF model served by an engine child; same contract as the in-process engine."""

    def __init__(
        self,
        model_id: str,
        path: Path,
        options: EngineOptions,
        pool: ChildPool | None = None,
    ):
        super().__init__()
        self.parallel = options.parallel
        self.max_output_tokens = options.max_output_tokens
        self.crashed: str | None = None
        self._lock = threading.Lock()  # sends, and the tables below against a crash
        self._keys = itertools.count(1)
        self._jobs: dict[int, RemoteJob] = {}
        self._embeds: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._call_lock = threading.Lock()  # one call at a time on the answers pipe
        self._events_loop: asyncio.AbstractEventLoop | None = None  # reads the events, if set
        self._watchers: list[Callable[[str], None]] = []
        self._closing = False
        # Short texts' tokens (markers, stop strings, short prompts), least recent dropped.
        self._short_tokens: OrderedDict[tuple[str, bool], list[int]] = OrderedDict()
        self._short_lock = threading.Lock()  # prepares tokenize on several threads at once
        self._compute_share = pool.share if pool is not None else None
        self._share = 1  # the share last sent to the child
        self.stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        started = time.perf_counter()
        child = pool.take() if pool is not None else Child()
        self.proc = child.proc
        self.pid = child.proc.pid
        self._commands = child.commands
        self._replies = child.replies
        self._answers = child.answers
        self._stderr = threading.Thread(
            target=self._read_stderr, name=f"hearth-stderr-{model_id}", daemon=True
        )
        self._stderr.start()
        level = logging.getLogger("hearth").getEffectiveLevel()
        try:
            self._send(ipc.Load(ipc.VERSION, model_id, path, options, level))
            reply = self._replies.recv()
        except (EOFError, OSError):
            reason = exit_reason(self.proc.wait())
            self._stderr.join(2)
            self._cleanup()
            raise EngineCrashed(
                f"the engine for model '{model_id}' crashed while loading ({reason})",
                param="model",
            ) from None
        if isinstance(reply, ipc.LoadFailed):
            self.proc.wait()
            self._stderr.join(2)
            self._cleanup()
            raise reply.error
        assert isinstance(reply, ipc.Ready)
        self.info = reply.info
        self._reader = threading.Thread(
            target=self._read, name=f"hearth-engine-{model_id}", daemon=True
        )
        self._reader.start()
        if pool is not None:
            pool.refill()
        log.debug(
            "engine child %d for %s ready in %.2fs",
            self.pid,
            model_id,
            time.perf_counter() - started,
        )

    # -- Engine ---------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let `loop` read the child's events from now on (the reader thread stops at the
        child's HandedOver, so no message is read twice or lost)."""
        with self._lock:
            if self._events_loop is None and not self._closing and self.crashed is None:
                self._events_loop = loop
                self._send_locked(ipc.Handover())

    def _start(
        self,
        request: GenerationRequest,
        first_index: int,
        loop: asyncio.AbstractEventLoop,
        channel: asyncio.Queue[Any],
    ) -> RemoteJob:
        self._follow(loop)
        with self._lock:
            self._raise_if_gone()
            job = RemoteJob(self, next(self._keys), loop, channel)
            self._jobs[job.key] = job
            self._send_locked(ipc.Generate(job.key, request, first_index))
            started = self._work_count() == 1
        if started:
            self._busy()
        return job

    def _cancel(self, handle: Any) -> None:
        assert isinstance(handle, RemoteJob)
        with self._lock:
            if handle.key in self._jobs:
                self._send_locked(ipc.Cancel(handle.key))

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        self._follow(loop)
        future: asyncio.Future[list[list[float]]] = loop.create_future()
        with self._lock:
            self._raise_if_gone()
            key = next(self._keys)
            self._embeds[key] = (loop, future)
            self._send_locked(ipc.Embed(key, inputs))
            started = self._work_count() == 1
        if started:
            self._busy()
        return await future

    def status(self) -> EngineStatus:
        try:
            status: EngineStatus = self._call("status")
        except HearthError:
            return EngineStatus(slots=[], queued=0, requests_served=0, pid=self.pid)
        return status

    def tokenize_many(self, texts: list[str], *, add_special: bool = True) -> list[list[int]]:
        cache = self._short_tokens
        found: dict[int, list[int]] = {}
        with self._short_lock:
            for i, text in enumerate(texts):
                tokens = cache.get((text, add_special)) if len(text) <= SHORT_TEXT else None
                if tokens is not None:
                    cache.move_to_end((text, add_special))
                    found[i] = tokens
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            answers = self._call("tokenize", [texts[i] for i in missing], add_special)
            with self._short_lock:
                for i, tokens in zip(missing, answers, strict=True):
                    found[i] = tokens
                    if len(texts[i]) <= SHORT_TEXT:
                        cache[(texts[i], add_special)] = tokens
                        if len(cache) > SHORT_CACHE:
                            cache.popitem(last=False)
        return [list(found[i]) for i in range(len(texts))]

    def detokenize(self, tokens: list[int]) -> str:
        text: str = self._call("detokenize", tokens)
        return text

    def _grammar_parses(self, grammar: str) -> bool:
        return bool(self._call("grammar_parses", grammar))

    def watch(self, on_crash: Callable[[str], None]) -> None:
        with self._lock:
            crashed = self.crashed
            if crashed is None:
                self._watchers.append(on_crash)
        if crashed is not None:
            on_crash(crashed)

    def close(self) -> None:
        """Stop the child (its requests fail) and wait until it has exited."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._send_locked(ipc.Stop())
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("engine child %d did not stop; killing it", self.pid)
            self.proc.kill()
            self.proc.wait()
        reader = getattr(self, "_reader", None)
        if reader is not None and reader is not threading.current_thread():
            reader.join(STOP_TIMEOUT)
        self._stop_loop_reader()
        self._stderr.join(STOP_TIMEOUT)
        self._fail_all(ModelUnloaded(UNLOADED))
        self._cleanup()

    # -- the reader thread ----------------------------------------------------------------------

    def _read(self) -> None:
        """The reader thread: until an event loop takes over (HandedOver), or the end."""
        while True:
            try:
                msg = self._replies.recv()
            except (EOFError, OSError):
                break
            if isinstance(msg, ipc.HandedOver):
                loop = self._events_loop
                assert loop is not None
                try:
                    loop.call_soon_threadsafe(self._follow, loop, True)
                    return
                except RuntimeError:  # that loop closed meanwhile: go on here
                    with self._lock:
                        self._events_loop = None
                    continue
            self._handle(msg, None)
        if not self._closing:
            self._died()

    def _follow(self, loop: asyncio.AbstractEventLoop, handed_over: bool = False) -> None:
        """On `loop`'s thread: read the events there; if the loop that did has closed (a
        library user's earlier asyncio.run), this one takes over."""
        with self._lock:
            current = self._events_loop
            if self._closing or self.crashed is not None:
                return
            if not handed_over and (current is None or not current.is_closed()):
                return  # the reader thread, or a live loop, reads them
            self._events_loop = loop
        fd = self._replies.fileno()
        loop.add_reader(fd, self._on_readable, loop)
        # uvloop makes a watched descriptor non-blocking; a message is read whole once its
        # first bytes are there (the child writes the rest at once), so it must block.
        os.set_blocking(fd, True)

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every message waiting on the events pipe, on the loop that reads it."""
        replies = self._replies
        try:
            while replies.poll(0):
                self._handle(replies.recv(), loop)
        except (EOFError, OSError):
            loop.remove_reader(replies.fileno())
            if not self._closing:  # _died waits for the exit: not on the loop
                threading.Thread(target=self._died, name="hearth-engine-died").start()

    def _stop_loop_reader(self) -> None:
        """Before the pipes close: the loop must not watch a closed descriptor."""
        loop = self._events_loop
        if loop is None or loop.is_closed():
            return
        fd = self._replies.fileno()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.remove_reader(fd)
            return
        removed: Future[None] = Future()

        def remove() -> None:
            loop.remove_reader(fd)
            removed.set_result(None)

        try:
            loop.call_soon_threadsafe(remove)
        except RuntimeError:
            return  # closed meanwhile
        with contextlib.suppress(TimeoutError):
            removed.result(STOP_TIMEOUT)

    def _handle(self, msg: Any, here: asyncio.AbstractEventLoop | None) -> None:
        if isinstance(msg, ipc.Events):
            self._dispatch(msg.items, here)
        elif isinstance(msg, ipc.Embedded):
            with self._lock:
                found = self._embeds.pop(msg.key, None)
                idle = self._work_count() == 0
            if found is not None:
                if found[0] is here:
                    settle(found[1], msg.result)
                else:
                    found[0].call_soon_threadsafe(settle, found[1], msg.result)
                if idle:
                    self._busy()

    def _dispatch(
        self, items: list[tuple[int, Any]], here: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """One step's events: one wake-up per event loop."""
        out: list[tuple[RemoteJob, Any]] = []
        jobs = self._jobs
        ended = False
        for key, event in items:
            job = jobs.get(key)
            if job is None:
                continue
            if isinstance(event, GenerationFinished | HearthError):
                job.finished = True
                with self._lock:
                    jobs.pop(key, None)
                    ended = ended or self._work_count() == 0
            out.append((job, event))
        if ended:
            self._busy()
        deliver_to_loops(out, here)

    def _died(self) -> None:
        reason = exit_reason(self.proc.wait())
        self._stderr.join(2)
        with self._lock:
            self.crashed = reason
            watchers, self._watchers = self._watchers, []
        log.error(
            "the engine for %s (pid %d) %s%s", self.info.id, self.pid, reason, self._tail_text()
        )
        for watcher in watchers:
            try:
                watcher(reason)
            except Exception:
                log.exception("a crash watcher failed")
        self._fail_all(EngineCrashed(f"the engine for model '{self.info.id}' crashed ({reason})"))

    def _fail_all(self, error: HearthError) -> None:
        with self._lock:
            jobs, self._jobs = self._jobs, {}
            embeds, self._embeds = self._embeds, {}
        self._busy()
        for job in jobs.values():
            job.finished = True
            with contextlib.suppress(RuntimeError):
                job.loop.call_soon_threadsafe(job.queue.put_nowait, error)
        for loop, future in embeds.values():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, future, error)

    def _read_stderr(self) -> None:
        """The child's log: kept (the last lines explain a crash) and passed on."""
        stream = self.proc.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.stderr_tail.append(line)
            # Lines the child's logging wrote start with their level; anything else is native
            # output (an assertion, an abort message), worth seeing.
            first, _, rest = line.partition(" ")
            level = _LEVELS.get(first)
            if level is None:
                child_log.warning("%s", line)
            else:
                child_log.log(level, "%s", rest)
        stream.close()

    # -- helpers --------------------------------------------------------------------------------

    def _raise_if_gone(self) -> None:
        if self.crashed is not None:
            raise EngineCrashed(f"the engine for model '{self.info.id}' crashed ({self.crashed})")
        if self._closing:
            raise ModelUnloaded(UNLOADED)

    def set_share(self, share: int) -> None:
        """Decode with 1/share of the threads from the next step on (see ComputeShare)."""
        with self._lock:
            if share != self._share and self.crashed is None and not self._closing:
                self._share = share
                self._send_locked(ipc.Share(share))

    def _busy(self) -> None:
        """Work started or ended here: the share of the cores may change."""
        if self._compute_share is not None:
            self._compute_share.update(self)

    def has_work(self) -> bool:
        with self._lock:
            return self._work_count() > 0 and self.crashed is None and not self._closing

    def _work_count(self) -> int:
        return len(self._jobs) + len(self._embeds)

    def _call(self, name: ipc.CallName, *args: Any) -> Any:
        """Ask the child and wait for the answer (its command thread answers at once)."""
        with self._call_lock:
            with self._lock:
                self._raise_if_gone()
                key = next(self._keys)
                self._send_locked(ipc.Call(key, name, args))
            deadline = time.monotonic() + CALL_TIMEOUT
            try:
                while True:  # an answer to a call that timed out earlier is skipped
                    if not self._answers.poll(max(0.0, deadline - time.monotonic())):
                        raise EngineError(
                            f"the engine for model '{self.info.id}' did not answer {name}"
                        )
                    answer = self._answers.recv()
                    if answer.key == key:
                        break
            except (EOFError, OSError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(2)
                code = self.proc.poll()
                reason = exit_reason(code) if code is not None else "it stopped answering"
                raise EngineCrashed(
                    f"the engine for model '{self.info.id}' crashed ({reason})"
                ) from None
        result = answer.result
        if isinstance(result, Exception):  # the child's answer was an error (a 400, say)
            raise result
        return result

    def _send(self, message: Any) -> None:
        with self._lock:
            self._send_locked(message)

    def _send_locked(self, message: Any) -> None:
        # OSError: the child is gone; the reader thread fails what it was serving.
        with contextlib.suppress(OSError):
            self._commands.send(message)

    def _tail_text(self) -> str:
        tail = list(self.stderr_tail)
        return ("; its last output:\n" + "\n".join(tail)) if tail else ""

    def _cleanup(self) -> None:
        for conn in (self._commands, self._replies, self._answers):
            with contextlib.suppress(OSError):
                conn.close()
