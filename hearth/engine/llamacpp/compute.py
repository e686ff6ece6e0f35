"""The one thread of a process that runs llama.cpp compute.

ggml is built with OpenMP: every thread that runs a graph gets an OpenMP team of its own, and
an idle team keeps spinning on cores a busy one needs (a decode loop on a second thread, after
one decode on the first, ran at a third of its speed). So every decode of a process (each
model's batch steps, its embeddings, its draft model) runs here, on one thread, whatever the
number of models. Workers take turns one step at a time; an idle worker costs nothing."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hearth.engine.llamacpp.worker import Worker
    from hearth.errors import HearthError


class ComputeThread:
    """Runs the steps of every attached worker, in turn, on one thread."""

    def __init__(self, name: str = "hearth-compute"):
        self.name = name
        self._inbox: queue.SimpleQueue[tuple[Worker, Any]] = queue.SimpleQueue()
        self._workers: list[Worker] = []  # touched only on the compute thread
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # -- any thread ---------------------------------------------------------------------------

    def submit(self, worker: Worker, item: Any) -> None:
        """Hand a job or embedding task to a worker; it is taken up before its next step."""
        self._ensure_started()
        self._inbox.put((worker, item))

    def attach(self, worker: Worker) -> None:
        self.submit(worker, _Attach())

    def detach(self, worker: Worker, error: HearthError) -> None:
        """Stop running the worker's steps; its pending work fails with `error`. Waits."""
        if self._thread is None or not self._thread.is_alive():
            worker.shutdown(error)
            return
        done = threading.Event()
        self.submit(worker, _Detach(error, done))
        done.wait()

    # -- the thread -----------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            busy = any(w.has_work() for w in self._workers)
            block = not busy
            while True:
                try:
                    worker, item = self._inbox.get(block=block)
                except queue.Empty:
                    break
                block = False
                self._dispatch(worker, item)
            for worker in self._workers:
                if worker.has_work():
                    worker.run_step()

    def _dispatch(self, worker: Worker, item: Any) -> None:
        if isinstance(item, _Attach):
            self._workers.append(worker)
        elif isinstance(item, _Detach):
            if worker in self._workers:
                self._workers.remove(worker)
            try:
                worker.shutdown(item.error)
            finally:
                item.done.set()
        else:
            worker.accept(item)


class _Attach:
    __slots__ = ()


class _Detach:
    __slots__ = ("done", "error")

    def __init__(self, error: HearthError, done: threading.Event):
        self.error = error
        self.done = done
