"""An engine child: one model's llama.cpp core in a process of its own.

Started by process.ProcessEngine as `python -m hearth.engine.llamacpp.child ANSWERS_FD`.
Commands arrive on stdin; events leave on a private copy of stdout (fd 1 itself is pointed at
stderr, so nothing native code prints can corrupt the channel), answers to calls on ANSWERS_FD;
stderr carries the log. When the server
goes away, however it goes (SIGKILL included), stdin reaches EOF and the child exits at once."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from hearth.engine.base import GenerationFinished
from hearth.engine.llamacpp import ipc
from hearth.engine.llamacpp.compute import ComputeThread
from hearth.engine.llamacpp.embed import EmbedTask
from hearth.engine.llamacpp.engine import LlamaCppCore
from hearth.engine.llamacpp.slots import Job
from hearth.errors import EngineError, HearthError

log = logging.getLogger("hearth.engine.child")


class Child:
    """The command loop (this thread) beside the compute thread."""

    def __init__(self, commands: Connection, replies: Connection, answers: Connection):
        self.commands = commands
        self.replies = replies
        self.answers = answers  # only this thread writes it
        self._send_lock = threading.Lock()  # the compute thread and this one both reply
        self.jobs: dict[int, Job] = {}
        self.core: LlamaCppCore | None = None

    def send(self, message: Any) -> None:
        with self._send_lock:
            self.replies.send(message)

    def sink(self, out: list[tuple[Job, Any]]) -> None:
        """A step's events, as one message (on the compute thread)."""
        items = []
        for job, event in out:
            items.append((job.key, event))
            if isinstance(event, GenerationFinished | HearthError):
                self.jobs.pop(job.key, None)
        self.send(ipc.Events(items))

    def load(self, msg: ipc.Load) -> bool:
        if msg.version != ipc.VERSION:
            err = EngineError(f"engine child speaks version {ipc.VERSION}, not {msg.version}")
            self.send(ipc.LoadFailed(err))
            return False
        try:
            self.core = LlamaCppCore(
                msg.model_id,
                msg.path,
                msg.options,
                compute=ComputeThread(),
                sink=self.sink,
            )
        except HearthError as exc:
            self.send(ipc.LoadFailed(exc))
            return False
        except Exception as exc:
            log.exception("loading %s failed", msg.model_id)
            self.send(ipc.LoadFailed(EngineError(f"loading failed: {exc}")))
            return False
        self.send(ipc.Ready(self.core.info))
        return True

    def serve(self) -> None:
        core = self.core
        assert core is not None
        while True:
            msg = self.commands.recv()
            if isinstance(msg, ipc.Generate):
                job = Job(msg.request, None, None, msg.first_index, key=msg.key)
                self.jobs[msg.key] = job
                core.submit(job)
            elif isinstance(msg, ipc.Cancel):
                found = self.jobs.get(msg.key)
                if found is not None:
                    found.cancel()
            elif isinstance(msg, ipc.Share):
                core.worker.share_wanted = msg.share  # read by the worker before its next step
            elif isinstance(msg, ipc.Embed):
                core.submit(EmbedTask(msg.inputs, self._embedded(msg.key)))
            elif isinstance(msg, ipc.Call):
                # Answered from here, not the compute thread: a long decode does not delay it.
                self.answers.send(ipc.Answer(msg.key, self.answer(core, msg)))
            elif isinstance(msg, ipc.Handover):
                self.send(ipc.HandedOver())
            elif isinstance(msg, ipc.Stop):
                core.close()
                return

    def answer(self, core: LlamaCppCore, call: ipc.Call) -> Any:
        try:
            if call.name == "tokenize":
                return core.tokenize_many(*call.args)
            if call.name == "detokenize":
                return core.detokenize(call.args[0])
            if call.name == "grammar_parses":
                return core.grammar_parses(call.args[0])
            return core.status()
        except HearthError as exc:
            return exc
        except Exception as exc:
            log.exception("%s failed", call.name)
            return EngineError(f"{call.name} failed: {exc}")

    def _embedded(self, key: int) -> Any:
        def done(result: list[list[float]] | Exception) -> None:
            self.send(ipc.Embedded(key, result))

        return done


def _exit_with_parent() -> None:
    """EOF on stdin ends the child once it serves; while it loads, watch the parent's pid."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    threading.Thread(target=_exit_with_parent, name="hearth-parent-watch", daemon=True).start()
    replies_fd = os.dup(1)
    os.dup2(2, 1)
    commands = Connection(0, writable=False)
    replies = Connection(replies_fd, readable=False)
    answers = Connection(int(sys.argv[1]), readable=False)
    child = Child(commands, replies, answers)
    try:
        load = commands.recv()
    except EOFError:
        return
    logging.basicConfig(
        stream=sys.stderr, level=load.log_level, format="%(levelname)s %(name)s: %(message)s"
    )
    code = 0
    try:
        if child.load(load):
            child.serve()
    except (EOFError, OSError):
        pass  # the server is gone: nobody is left to answer
    except Exception:
        log.exception("engine child failed")
        code = 1
    finally:
        # No interpreter teardown: native threads may still be inside llama.cpp.
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
