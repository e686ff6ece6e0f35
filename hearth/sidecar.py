"""Hearth as a desktop app's sidecar (docs/desktop.md): `hearth serve --sidecar`, and the
`hearth-server` binary's entry point, which is that plus the engine child it re-runs itself
as. Stdout carries exactly one JSON line, `ready` or `error`; every log line goes to stderr.

A parent needs no other signal than the ones documented there: SIGTERM or SIGINT, the end of
stdin (--exit-on-stdin-close), POST /api/shutdown, or its own death (--parent-pid)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from hearth.errors import HearthError

# A ConfigError's generic code is a bad flag or setting to the parent; the rest keep theirs.
_CODES = {"invalid_config": "bad_flag"}


def emit(event: dict[str, Any]) -> None:
    """One line on stdout, flushed at once (the parent waits on it)."""
    sys.stdout.write(json.dumps(event, separators=(", ", ": ")) + "\n")
    sys.stdout.flush()


def error(code: str, message: str) -> int:
    emit({"event": "error", "code": code, "message": message})
    return 1


def serve_sidecar(flags: dict[str, Any]) -> int:
    """`hearth serve` with these flags, as a sidecar: the exit code (0 after a clean stop)."""
    from hearth.server import run
    from hearth.settings import load_settings

    try:
        settings = load_settings({**flags, "sidecar": True})
        run(settings, announce=emit)
    except HearthError as exc:
        return error(_CODES.get(exc.code or "", exc.code or "startup_failed"), exc.message)
    except Exception as exc:  # a data directory that cannot be made, a broken install...
        logging.getLogger("hearth").exception("Hearth did not start")
        return error("startup_failed", f"{type(exc).__name__}: {exc}")
    return 0


def wait_for_exit(pid: int) -> None:
    """Return once the process `pid` has ended. Polled: a frozen binary's getppid() may be
    its own bootloader, so the parent names itself, and no signal of its death reaches us."""
    if os.name == "nt":  # pragma: no cover - Windows: wait on the process handle
        import ctypes

        synchronize, infinite = 0x00100000, 0xFFFFFFFF
        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(synchronize, False, pid)
        if handle:
            kernel32.WaitForSingleObject(handle, infinite)
            kernel32.CloseHandle(handle)
        return
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass  # alive, someone else's
        time.sleep(0.2)


def wait_for_stdin_end() -> None:
    """Return at the end of stdin (the parent closed its end of the pipe, or died)."""
    stream = sys.stdin.buffer if sys.stdin is not None else None
    if stream is None:
        return
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    """The `hearth-server` binary: `hearth serve --sidecar` with the given flags. Run with
    `--engine-child FD`, it is a model's engine child instead (no second executable)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--engine-child"]:
        from hearth.engine.llamacpp import child

        sys.argv = [sys.argv[0], *args[1:]]
        child.main()
        return
    sys.exit(run_cli(["serve", "--sidecar", *args]))


def run_cli(args: list[str]) -> int:
    """The CLI with its own usage errors as error lines (a parent cannot read help text)."""
    import typer

    from hearth.cli import app

    # Typer's own exceptions (newer Typer vendors click), else click's.
    usage: tuple[type[Exception], ...] = tuple(
        cls for cls in (getattr(typer, "TyperException", None), _click_exception()) if cls
    )
    try:
        result = app(args, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 130
    except usage as exc:
        format_message = getattr(exc, "format_message", None)
        return error("bad_flag", format_message() if format_message else str(exc))
    return int(result or 0)


def _click_exception() -> type[Exception] | None:
    try:
        import click
    except ImportError:
        return None
    return click.ClickException


if __name__ == "__main__":
    main()
