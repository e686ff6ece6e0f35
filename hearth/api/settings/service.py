"""The settings a person changes from the UI: read, validated, saved to the config file
(comments and layout kept, by tomlkit) and put in force at once where the server can.

Not every setting is here: those a person tunes while running models are. The rest stay in
the config file, flags and environment (docs/configuration.md)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import tomlkit
from pydantic import ValidationError
from tomlkit.exceptions import TOMLKitError

from hearth.api.security import is_loopback, load_api_keys
from hearth.errors import Conflict, InvalidRequestError, ModelNotFound
from hearth.settings import Settings, default_config_file

if TYPE_CHECKING:
    from hearth.runtime import Runtime

Applies = Literal["now", "next_load", "restart"]
Kind = Literal["string", "integer", "number", "list", "keys", "model"]
MAX_KEY_CHARS = 4096
MAX_TEXT = 4096  # a path or a host name
MAX_ITEMS = 100  # origins, keys added at once


@dataclass(frozen=True)
class Editable:
    label: str
    help: str
    applies: Applies
    type: Kind
    setting: str  # the Settings field
    nullable: bool = False


FIELDS: dict[str, Editable] = {
    "default_model": Editable(
        "Default model",
        "Picked first in Chat, and loaded when Hearth starts (kept loaded).",
        "now",
        "model",
        nullable=True,
        setting="model",
    ),
    "models_dir": Editable(
        "Models directory",
        "Where Hearth finds GGUF files.",
        "restart",
        "string",
        setting="models_dir",
    ),
    "parallel": Editable(
        "Parallel sequences",
        "Requests one model serves at once.",
        "next_load",
        "integer",
        setting="parallel",
    ),
    "ctx_size": Editable(
        "Context size",
        "Tokens per sequence. Empty: the model's trained context, lowered only to fit the "
        "memory budget.",
        "next_load",
        "integer",
        nullable=True,
        setting="ctx_size",
    ),
    "gpu_layers": Editable(
        "GPU layers",
        "Layers offloaded to the GPU; -1: all. Empty: none (all with LLM_USE_GPU).",
        "next_load",
        "integer",
        nullable=True,
        setting="gpu_layers",
    ),
    "keep_alive": Editable(
        "Keep-alive",
        "How long an idle model stays loaded: 5m, 1h, 0 (unload at once), -1 (forever). "
        "From each model's next request.",
        "now",
        "string",
        setting="keep_alive",
    ),
    "cors_origins": Editable(
        "CORS origins",
        "Web origins besides this machine's own pages that may call the API; * for any.",
        "now",
        "list",
        setting="cors_origins",
    ),
    "api_keys": Editable(
        "API keys",
        "With a key set, every request needs one (the UI asks once per browser session).",
        "now",
        "keys",
        setting="api_key",
    ),
    "request_log_days": Editable(
        "Request log days",
        "Rows older than this are removed.",
        "now",
        "number",
        setting="request_log_days",
    ),
    "request_log_rows": Editable(
        "Request log rows",
        "At most this many rows are kept.",
        "now",
        "integer",
        setting="request_log_rows",
    ),
    "host": Editable(
        "Host",
        "The address Hearth listens on; one other than this machine's needs an API key.",
        "restart",
        "string",
        setting="host",
    ),
    "port": Editable("Port", "The port Hearth listens on.", "restart", "integer", setting="port"),
}


def _hint(secret: bytes) -> str:
    """Enough of a key to tell two apart, never enough to use it."""
    text = secret.decode(errors="replace")
    return "…" + text[-4:] if len(text) > 8 else "…"


class SettingsService:
    """GET and PATCH /api/settings, over the runtime's settings and its config file."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.started = rt.settings  # what is in force until a restart, for restart-only ones
        self._lock = asyncio.Lock()  # one edit of the file at a time

    @property
    def path(self) -> Path:
        return self.rt.settings.config or default_config_file()

    def view(self) -> dict[str, Any]:
        s = self.rt.settings
        keys = load_api_keys(s)
        file_keys = set(_as_list(self._read().get("api_key")))
        values: dict[str, Any] = {
            "default_model": self.default_model(),
            "api_keys": [
                {
                    "name": k.name,
                    "hint": _hint(k.secret),
                    # Only the config file's keys can be removed here; the others would be back.
                    "removable": k.secret.decode(errors="replace") in file_keys
                    and k.name.startswith("key-"),
                }
                for k in keys
            ],
        }
        for name, spec in FIELDS.items():
            if name not in values:
                value = getattr(s, spec.setting)
                values[name] = str(value) if isinstance(value, Path) else value
        pending = [
            name
            for name, spec in FIELDS.items()
            if spec.applies == "restart"
            and getattr(self.started, spec.setting) != getattr(s, spec.setting)
        ]
        return {
            "config_file": str(self.path),
            "settings": values,
            "fields": {
                name: {
                    "label": spec.label,
                    "help": spec.help,
                    "applies": spec.applies,
                    "type": spec.type,
                    "nullable": spec.nullable,
                }
                for name, spec in FIELDS.items()
            },
            "restart_pending": pending,
        }

    def default_model(self) -> str | None:
        if self.rt.preload:  # ids, where the setting may hold a path
            return self.rt.preload[0]
        return self.rt.settings.model[0] if self.rt.settings.model else None

    async def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            updates, file_updates = self._check(changes)
            if updates:
                new = self.rt.settings.model_copy(update=updates)
                problem = _bind_problem(new)
                if problem:
                    raise InvalidRequestError(problem, param="api_keys")
                await asyncio.to_thread(self._write, file_updates)
                self.rt.apply(new)
        return await asyncio.to_thread(self.view)  # it reads the config file

    # -- checks --------------------------------------------------------------------------------

    def _check(self, changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(Settings updates, config-file updates: None removes the key) or a 400 naming the
        first field at fault."""
        updates: dict[str, Any] = {}
        file_updates: dict[str, Any] = {}
        for name, value in changes.items():
            spec = FIELDS.get(name)
            if spec is None:
                raise InvalidRequestError(
                    f"{name!r} is not a setting that can be changed here; "
                    f"these can: {', '.join(FIELDS)}",
                    param=name,
                )
            if name == "default_model":
                model = self._model(value)
                updates["model"] = [model] if model else []
                file_updates["model"] = [model] if model else None
            elif name == "api_keys":
                keys = self._keys(value)
                updates["api_key"] = keys
                file_updates["api_key"] = [k for k in keys if k not in self._flag_keys()] or None
            else:
                if value is None and not spec.nullable:
                    raise InvalidRequestError(f"{spec.label} cannot be empty", param=name)
                checked = _validated(spec, name, value)
                updates[spec.setting] = checked
                file_updates[spec.setting] = str(checked) if isinstance(checked, Path) else checked
        return updates, file_updates

    def _model(self, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > 512:
            raise InvalidRequestError("Default model must be a model id", param="default_model")
        try:
            return self.rt.registry.get(value).id
        except ModelNotFound:
            raise InvalidRequestError(
                f"no model {value!r} here (see GET /v1/models)", param="default_model"
            ) from None

    def _flag_keys(self) -> set[str]:
        """Keys in force that the config file does not hold (flags, environment)."""
        in_file = set(_as_list(self._read().get("api_key")))
        return {k for k in self.rt.settings.api_key if k not in in_file}

    def _keys(self, value: Any) -> list[str]:
        if not isinstance(value, dict) or set(value) - {"add", "remove"}:
            raise InvalidRequestError(
                'API keys are changed with {"add": [keys], "remove": [names]}', param="api_keys"
            )
        add, remove = value.get("add") or [], value.get("remove") or []
        if (
            not isinstance(add, list)
            or not isinstance(remove, list)
            or len(add) + len(remove) > MAX_ITEMS
        ):
            raise InvalidRequestError(
                f"add and remove must be lists (up to {MAX_ITEMS} keys)", param="api_keys"
            )
        current = list(self.rt.settings.api_key)
        names = {f"key-{i}": key for i, key in enumerate(current, 1)}
        flag_keys = self._flag_keys()
        for name in remove:
            if not isinstance(name, str) or name not in names:
                raise InvalidRequestError(f"no API key named {name!r}", param="api_keys")
            if names[name] in flag_keys:
                raise InvalidRequestError(
                    f"{name} comes from --api-key or HEARTH_API_KEY, not the config file: "
                    "remove it there",
                    param="api_keys",
                )
        kept = [key for name, key in names.items() if name not in remove]
        for key in add:
            if (
                not isinstance(key, str)
                or not key.strip()
                or len(key) > MAX_KEY_CHARS
                or any(c.isspace() or not c.isprintable() for c in key)
            ):
                raise InvalidRequestError(
                    f"an API key is 1 to {MAX_KEY_CHARS} printable characters, no spaces",
                    param="api_keys",
                )
            if key in kept:
                raise InvalidRequestError("that API key is already set", param="api_keys")
            kept.append(key)
        return kept

    # -- the file ------------------------------------------------------------------------------

    def _read(self) -> tomlkit.TOMLDocument:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return tomlkit.document()
        except (OSError, UnicodeDecodeError) as exc:
            raise Conflict(f"cannot read the config file {self.path}: {exc}") from None
        try:
            return tomlkit.parse(text)
        except TOMLKitError as exc:
            raise Conflict(
                f"the config file {self.path} is not valid TOML ({exc}): fix it by hand first"
            ) from None

    def _write(self, updates: dict[str, Any]) -> None:
        doc = self._read()
        for key, value in updates.items():
            # The file may spell a setting with dashes; one spelling stays.
            doc.pop(key.replace("_", "-"), None)
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside it and renamed: a crash leaves the old file or the new, never half.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(tomlkit.dumps(doc))
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o777)
            else:
                os.chmod(tmp, 0o600)  # it may hold API keys
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _validated(spec: Editable, name: str, value: Any) -> Any:
    """The value as Settings takes it, by Settings' own rules."""
    if spec.type == "list":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if (
            not isinstance(value, list)
            or len(value) > MAX_ITEMS
            or not all(isinstance(v, str) and _plain(v, 512) for v in value)
        ):
            raise InvalidRequestError(
                f"{spec.label} must be a list of up to {MAX_ITEMS} names", param=name
            )
    if spec.type in ("integer", "number") and isinstance(value, bool):
        raise InvalidRequestError(f"{spec.label} must be a number", param=name)
    if spec.type == "string" and (
        not isinstance(value, str | int | float) or (isinstance(value, str) and not _plain(value))
    ):
        # Written to the file and read at the next start: a NUL or a newline would break it.
        raise InvalidRequestError(
            f"{spec.label} must be 1 to {MAX_TEXT} printable characters", param=name
        )
    try:
        checked = Settings.model_validate({spec.setting: value})
    except ValidationError as exc:
        raise InvalidRequestError(f"{spec.label}: {exc.errors()[0]['msg']}", param=name) from None
    return getattr(checked, spec.setting)


def _plain(text: str, limit: int = MAX_TEXT) -> bool:
    return 0 < len(text) <= limit and text.isprintable()


def _bind_problem(settings: Settings) -> str | None:
    if is_loopback(settings.host) or settings.insecure_no_auth or load_api_keys(settings):
        return None
    return (
        f"Hearth would listen on {settings.host} with no API key: add a key first, "
        "or keep the host on this machine"
    )
