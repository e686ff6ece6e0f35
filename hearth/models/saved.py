"""Names made through Ollama's API: copies (another name for a model) and created models (a
model's file under a new name with its own system prompt and sampling), kept in
`<models_dir>/.hearth/names.json` so they survive restarts.

The registry merges this file on every scan. It is small and rewritten whole: a new version is
written beside it, synced, then renamed over it, under a lock file, so a crash or a second
process (the CLI) never leaves half a file. Names are stored normalised: lower case, with
Ollama's default tag `:latest` dropped (`mine` and `mine:latest` are one name)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearth.errors import ConfigError, InvalidRequestError, UnsafePath
from hearth.models.config import TAGGED, ModelConfig, check_model_id

STATE_DIR = ".hearth"  # hidden, so the models scan never walks into it
NAMES_FILE = "names.json"

log = logging.getLogger("hearth.models")


def normalise_name(name: str, *, param: str = "model") -> str:
    """A name for a copy or a created model: an id, optionally with one `:tag`; a 400 if not."""
    try:
        return check_model_id(name, tagged=True)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param=param) from None


def display_name(name: str) -> str:
    """How Ollama's clients see a name: with its tag, `:latest` when it has none."""
    return name if ":" in name else f"{name}:latest"


class SavedCopy(BaseModel):
    """`name` is another name for the model whose id is `target` (POST /api/copy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    target: str
    created_at: float = Field(default_factory=time.time)


class SavedModel(BaseModel):
    """A created model (POST /api/create): a `[[models]]`-like entry under its own name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    config: ModelConfig  # id = name; a path inside the models directory is kept relative
    parent: str = ""  # the model it was created from (Ollama's details.parent_model)
    owns_file: bool = False  # made from an uploaded GGUF that now lives in the models dir
    digest: str | None = None  # that upload's sha256
    license: str | None = None
    created_at: float = Field(default_factory=time.time)


class SavedNames(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    copies: list[SavedCopy] = Field(default_factory=list)
    models: list[SavedModel] = Field(default_factory=list)

    def find_copy(self, name: str) -> SavedCopy | None:
        """The copy called `name`, if any."""
        return next((c for c in self.copies if c.name == name), None)

    def find_model(self, name: str) -> SavedModel | None:
        """The created model called `name`, if any."""
        return next((m for m in self.models if m.name == name), None)

    def without(self, name: str) -> SavedNames:
        """This file with `name` forgotten (whichever kind it is)."""
        return SavedNames(
            copies=[c for c in self.copies if c.name != name],
            models=[m for m in self.models if m.name != name],
        )

    def with_copy(self, copy: SavedCopy) -> SavedNames:
        """This file with `copy` added (replacing a copy of that name)."""
        rest = self.without(copy.name)
        return SavedNames(copies=[*rest.copies, copy], models=rest.models)

    def with_model(self, model: SavedModel) -> SavedNames:
        """This file with `model` added (replacing a name it takes over)."""
        rest = self.without(model.name)
        return SavedNames(copies=rest.copies, models=[*rest.models, model])


class NameStore:
    """Reads (cached by the file's version) and atomic updates of names.json."""

    def __init__(self, root: Callable[[], Path]):
        self._root = root
        self._lock = threading.Lock()
        self._cache: tuple[Path, tuple[int, int, int], SavedNames] | None = None
        self._warned: set[tuple[int, int, int]] = set()

    def state_dir(self) -> Path:
        """`<models_dir>/.hearth`, where Hearth keeps its own files."""
        return self._root() / STATE_DIR

    def path(self) -> Path:
        return self.state_dir() / NAMES_FILE

    def read(self) -> SavedNames:
        """The saved names; an unreadable file counts as empty (and is logged once)."""
        path = self.path()
        try:
            st = path.stat()
        except OSError:
            return SavedNames()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            if self._cache is not None and self._cache[:2] == (path, stamp):
                return self._cache[2]
        try:
            names = self._parse(path)
        except ConfigError as exc:
            if stamp not in self._warned:
                self._warned.add(stamp)
                log.warning("%s", exc.message)
            names = SavedNames()
        with self._lock:
            self._cache = (path, stamp, names)
        return names

    def update(self, change: Callable[[SavedNames], SavedNames]) -> SavedNames:
        """Apply `change` to the file as it is now and write the result atomically. A file
        that cannot be read is never overwritten: the user's names would be lost."""
        with self._lock, self._locked():
            path = self.path()
            current = self._parse(path) if path.exists() else SavedNames()
            new = change(current)
            self._write(path, new)
            self._cache = None
            return new

    @staticmethod
    def _parse(path: Path) -> SavedNames:
        try:
            return SavedNames.model_validate_json(path.read_bytes(), context=TAGGED)
        except (OSError, ValidationError, ValueError) as exc:
            raise ConfigError(
                f"cannot read {path}: {exc}; fix or remove it (it holds the names made with "
                "/api/copy and /api/create)"
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across processes too (a server and a CLI)."""
        folder = self.state_dir()
        if folder.is_symlink():
            raise UnsafePath(f"{folder} is a symlink; Hearth never writes through one")
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            folder / "names.lock", os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _write(path: Path, names: SavedNames) -> None:
        data = names.model_dump_json(indent=2, exclude_defaults=True).encode()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
