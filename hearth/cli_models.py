"""Model management commands: pull, import, rm (files), and ps, load, unload (a running server).

Registered onto the `hearth` app by hearth.cli. Heavy imports stay inside the commands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hearth.errors import HearthError

commands = typer.Typer()

DEFAULT_URL = "http://127.0.0.1:11434"
UrlOption = Annotated[
    str, typer.Option("--url", envvar="HEARTH_URL", help="The running Hearth server.")
]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="HEARTH_API_KEY", help="The server's API key, if any."),
]
DirOption = Annotated[Path | None, typer.Option(help="Directory of GGUF models.")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _settings(**flags: Any) -> Any:
    from hearth.settings import load_settings

    try:
        return load_settings(flags)
    except HearthError as exc:
        raise _fail(exc.message) from None


class _Unreachable(Exception):
    """No server answers at the URL."""


def _call(method: str, url: str, path: str, api_key: str | None, body: Any = None) -> Any:
    """One request to the server; its errors (either shape) become CLI errors."""
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, json=body, headers=headers, timeout=None
        )
    except httpx.TransportError as exc:
        raise _Unreachable(
            f"no Hearth server at {url} ({exc}); start one with `hearth serve`"
        ) from None
    data = response.json() if response.content else {}
    if response.status_code >= 400:
        error = data.get("error") if isinstance(data, dict) else None
        # Ollama's shape under /api/ (a string), OpenAI's elsewhere (an object).
        message = error.get("message") if isinstance(error, dict) else error
        raise _fail(message or f"the server answered {response.status_code}")
    return data


def _remote(method: str, url: str, path: str, api_key: str | None, body: Any = None) -> Any:
    try:
        return _call(method, url, path, api_key, body)
    except _Unreachable as exc:
        raise _fail(str(exc)) from None


def _mib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**20:,.0f} MiB"


def _until(expires_at: str | None, active: int, keep_alive: str) -> str:
    from datetime import datetime

    if active:
        return f"in use ({active} request{'s' if active > 1 else ''})"
    if expires_at is None:
        return "forever" if keep_alive == "forever" else "now"
    left = datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp() - time.time()
    return f"in {max(0, round(left))}s" if left < 120 else f"in {round(left / 60)} min"


@commands.command()
def ps(url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Show the models a running server has loaded, their memory and idle timers."""
    from rich.console import Console
    from rich.table import Table

    data = _remote("GET", url, "/api/ps", api_key)
    table = Table("id", "size", "processor", "context", "idle", "unloads")
    for m in data["models"]:
        gpu = m["size_vram"] / m["size"] if m["size"] else 0
        processor = "CPU" if gpu == 0 else "GPU" if gpu == 1 else f"{gpu:.0%} GPU"
        idle = m["idle_seconds"]
        table.add_row(
            m["model"],
            _mib(m["size"]),
            processor,
            str(m["context_length"]),
            "" if idle is None else f"{idle:.0f}s",
            _until(m["expires_at"], m["active_requests"], m["keep_alive"]),
        )
    Console().print(table)


@commands.command()
def load(
    model: Annotated[str, typer.Argument(help="Model id or alias.")],
    keep_alive: Annotated[
        str | None, typer.Option(help="How long it stays when idle: 5m, 1h, -1 (forever).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Load a model on a running server now."""
    body: dict[str, Any] = {"model": model}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    data = _remote("POST", url, "/api/load", api_key, body)
    typer.echo(f"loaded {data['model']} ({_mib(data['process']['size'])})")


@commands.command()
def unload(
    model: Annotated[str, typer.Argument(help="Model id or alias.")],
    force: Annotated[bool, typer.Option(help="Unload even if requests are running.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Unload a model from a running server (a busy one goes when its requests end)."""
    data = _remote("POST", url, "/api/unload", api_key, {"model": model, "force": force})
    messages = {
        "unloaded": "unloaded",
        "not_loaded": "was not loaded",
        "unloading": "is busy; it unloads when its requests end",
    }
    typer.echo(f"{data['model']} {messages[data['status']]}")


@commands.command("rm")
def remove(
    model: Annotated[str, typer.Argument(help="Model id or alias.")],
    force: Annotated[bool, typer.Option(help="Delete even if it is serving requests.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    models_dir: Annotated[
        Path | None, typer.Option(help="Directory of GGUF models, when no server runs.")
    ] = None,
) -> None:
    """Delete a model's files: through the running server, or directly when none runs."""
    try:
        data = _call("DELETE", url, "/api/delete", api_key, {"model": model, "force": force})
    except _Unreachable:
        data = _delete_locally(model, models_dir)
    files = f" ({', '.join(data['files'])})" if data["files"] else ""  # none: a name only
    typer.echo(f"deleted {data['model']}{files}")


def _delete_locally(model: str, models_dir: Path | None) -> dict[str, Any]:
    from hearth.models.names import delete_name_locally
    from hearth.models.registry import Registry

    settings = _settings(models_dir=models_dir)
    registry = Registry(settings.models_dir, configs=settings.model_configs)
    try:
        # A copy or a created model (Ollama's API) is only forgotten, as the server does.
        name, files = delete_name_locally(registry, model)
    except HearthError as exc:
        raise _fail(exc.message) from None
    return {"model": name, "files": [f.name for f in files]}


@commands.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A .gguf file (a split model's first part).")],
    name: Annotated[
        str | None, typer.Option(help="File name in the models directory [the same].")
    ] = None,
    link: Annotated[bool, typer.Option(help="Symlink instead of copying.")] = False,
    models_dir: DirOption = None,
) -> None:
    """Validate a local GGUF file and copy (or link) it into the models directory."""
    from rich.progress import Progress

    from hearth.models.store import import_model

    settings = _settings(models_dir=models_dir)
    with Progress(transient=True) as bar:
        task = bar.add_task(f"copying {path.name}", total=None)
        try:
            model_id, files = import_model(
                path,
                settings.models_dir,
                name=name,
                link=link,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except HearthError as exc:
            raise _fail(exc.message) from None
    typer.echo(
        f"{'linked' if link else 'imported'} {model_id}  ({', '.join(f.name for f in files)})"
    )


@commands.command()
def pull(
    model: Annotated[
        str, typer.Argument(help="owner/repo/file.gguf, owner/repo:Q4_K_M, or a URL.")
    ],
    name: Annotated[
        str | None, typer.Option(help="File name in the models directory [the remote's].")
    ] = None,
    sha256: Annotated[
        str | None, typer.Option(help="Expected sha256, when the source gives none.")
    ] = None,
    models_dir: DirOption = None,
) -> None:
    """Download a model (Hugging Face or a URL) with resume, checks and a progress bar."""
    settings = _settings(models_dir=models_dir)
    try:
        model_id = asyncio.run(_pull(settings, model, name, sha256))
    except HearthError as exc:
        raise _fail(exc.message) from None
    except KeyboardInterrupt:
        raise _fail("cancelled; run the same command again to resume") from None
    typer.echo(f"pulled {model_id}")


async def _pull(settings: Any, spec: str, name: str | None, sha256: str | None) -> str:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from hearth.models.pull import plan_pull, run_pull

    plan = await plan_pull(
        spec, settings.models_dir, name=name, sha256=sha256, endpoint=settings.hf_endpoint
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    tasks: dict[str, Any] = {}
    with Progress(*columns) as bar:
        async for event in run_pull(plan):
            if event.status == "downloading" and event.file:
                if event.file not in tasks:
                    tasks[event.file] = bar.add_task(event.file, total=event.total)
                bar.update(tasks[event.file], completed=event.completed, total=event.total)
            elif event.status != "success":
                bar.console.print(f"{event.status}{f' {event.file}' if event.file else ''}")
    return plan.model_id
