"""Safe by default: API keys, the Host check against DNS rebinding, the browser origins that
may call the API, and the rule that a server reachable from other machines needs a key.

Pure ASGI middleware, as in api/middleware, so streams pass through untouched."""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.api.middleware import send_error
from hearth.errors import AuthenticationError, ConfigError, PermissionDenied
from hearth.settings import Settings

# Pages served from these origins may call the API: the machine's own pages, and the webview
# schemes desktop shells (Tauri, Electron) load their UI from. --cors-origins adds more.
LOCAL_ORIGINS_REGEX = (
    r"https?://(localhost|[a-z0-9-]+\.localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
    r"|tauri://localhost|https?://tauri\.localhost|app://[^/]*|file://"
)

# What needs no key: liveness, and the page that asks for one with its files.
OPEN_PATHS = frozenset({"/health", "/"})
OPEN_PREFIX = "/ui/"


@dataclass(frozen=True)
class ApiKey:
    name: str  # shown in the request log, never the key itself
    secret: bytes


def load_api_keys(settings: Settings) -> list[ApiKey]:
    """--api-key values (named key-1, key-2, ...) and --api-key-file's `name:key` lines."""
    keys = [ApiKey(f"key-{i}", key.encode()) for i, key in enumerate(settings.api_key, 1)]
    if settings.api_key_file is not None:
        keys += _read_key_file(settings.api_key_file)
    for key in keys:
        if not key.secret.strip():
            raise ConfigError(f"API key {key.name!r} is empty")
    return keys


def _read_key_file(path: Path) -> list[ApiKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc}") from None
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        if not sep or not name.strip() or not secret.strip():
            raise ConfigError(f"{path} line {n}: expected 'name:key'")
        keys.append(ApiKey(name.strip(), secret.strip().encode()))
    return keys


def is_loopback(host: str) -> bool:
    """Whether an address (or `localhost`) is this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_problem(settings: Settings, keys: list[ApiKey]) -> str | None:
    """Why the server must not start as configured, in one line; None when it may."""
    if is_loopback(settings.host) or keys or settings.insecure_no_auth:
        return None
    return (
        f"refusing to listen on {settings.host} without an API key: anyone who can reach "
        "this machine could use its models. Set --api-key (or --api-key-file), or pass "
        "--insecure-no-auth to accept that"
    )


@dataclass
class KeyRing:
    """The keys in force; the settings API replaces them while the server runs."""

    keys: list[ApiKey]


class ApiKeyMiddleware:
    """With keys set, every route but OPEN_PATHS needs one: as `Authorization: Bearer <key>`,
    or as `x-api-key: <key>` (Anthropic's clients send that). The key's name goes into the
    request's state for the request log. With none, everything passes."""

    def __init__(self, app: ASGIApp, ring: KeyRing):
        self.app = app
        self.ring = ring

    def _match(self, offered: bytes) -> str | None:
        found = None
        for key in self.ring.keys:  # every key compared, always: the time says nothing of which
            if hmac.compare_digest(offered, key.secret):
                found = key.name
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.ring.keys
            or scope["method"] == "OPTIONS"  # CORS preflights carry no credentials
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        offered = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                offered = value[7:].strip()
            elif name == b"x-api-key" and not offered:
                offered = value.strip()
        key_name = self._match(offered) if offered else None
        if key_name is None:
            err = AuthenticationError(
                "missing or invalid API key: send it as 'Authorization: Bearer <key>' "
                "or 'x-api-key: <key>'"
            )
            await send_error(scope, send, err, [(b"www-authenticate", b"Bearer")])
            return
        scope.setdefault("state", {})["api_key_name"] = key_name
        await self.app(scope, receive, send)


_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:]*)(:\d*)?$")


def host_name(header: str) -> str:
    """The name in a Host header, without its port."""
    m = _HOST_PORT.match(header.strip().lower())
    return (m.group(1) if m else header).rstrip(".")


def allowed_host(name: str, extra: list[str]) -> bool:
    """Loopback names and addresses, and --allowed-hosts (`*` any; `.example.com` or
    `*.example.com` that domain and every name under it)."""
    if name == "localhost" or name.endswith(".localhost") or is_loopback(name):
        return True
    for allowed in extra:
        allowed = allowed.strip().lower()
        if allowed == "*" or allowed == name:
            return True
        suffix = allowed.removeprefix("*")
        if suffix.startswith(".") and (name.endswith(suffix) or name == suffix[1:]):
            return True
    return False


class HostCheckMiddleware:
    """DNS rebinding: a page on some attacker's domain that resolves to 127.0.0.1 reaches a
    loopback server with its own name in Host. A loopback server answers only its own names
    (as Ollama does since CVE-2024-28224); --allowed-hosts names more."""

    def __init__(self, app: ASGIApp, allowed: list[str]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"host":
                host = host_name(value.decode("latin-1"))
                if not allowed_host(host, self.allowed):
                    err = PermissionDenied(
                        f"host {host!r} is not allowed: this server answers only to "
                        "localhost and loopback addresses (add names with --allowed-hosts)",
                        code="host_not_allowed",
                    )
                    await send_error(scope, send, err, [])
                    return
                break
        await self.app(scope, receive, send)


class CorsMiddleware:
    """Starlette's CORS with the origins read from the settings in force, so the settings API
    can change them while the server runs: the machine's own pages and webviews always,
    --cors-origins besides (`*` any)."""

    def __init__(self, app: ASGIApp, origins: Callable[[], list[str]]):
        self.app = app
        self.origins = origins
        self._built: tuple[tuple[str, ...], ASGIApp] | None = None

    def _inner(self) -> ASGIApp:
        origins = tuple(self.origins())
        if self._built is None or self._built[0] != origins:
            cors = CORSMiddleware(
                self.app,
                allow_origins=list(origins),
                allow_origin_regex=None if "*" in origins else LOCAL_ORIGINS_REGEX,
                allow_methods=["*"],
                allow_headers=["*"],
                allow_credentials=False,  # keys travel in headers, never cookies; never with `*`
                expose_headers=["x-request-id"],
            )
            self._built = (origins, cors)
        return self._built[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner()(scope, receive, send)
