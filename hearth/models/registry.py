"""The registry: which models exist, under which ids, with their header metadata.

Ids are derived from file names (lower-cased, without .gguf; a sub-directory becomes a prefix),
so they stay stable across restarts. Headers are read once per (size, mtime) of a file."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import InvalidModelFile, ModelNotFound
from hearth.models.gguf_header import GGUFHeader, read_header


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model the server can serve."""

    id: str
    path: Path
    size_bytes: int
    created: int
    header: GGUFHeader | None
    error: str | None  # why the file is unusable, when it is

    @property
    def status(self) -> str:
        return "invalid" if self.error else "available"


def model_id_for(path: Path, root: Path | None) -> str:
    """A readable, stable id for a file: its name without .gguf, under its folder if any."""
    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else None
    parts = list(rel.parts) if rel is not None else [path.name]
    parts[-1] = parts[-1].removesuffix(".gguf")
    return "/".join(parts).lower()


class Registry:
    """Models in the models directory plus those named explicitly at start-up."""

    def __init__(self, models_dir: Path, extra: list[Path] | None = None):
        self.models_dir = models_dir
        self.extra = list(extra or [])
        self._lock = threading.Lock()
        self._headers: dict[Path, tuple[tuple[int, int], GGUFHeader | None, str | None]] = {}

    def add_path(self, path: Path) -> ModelEntry:
        """Register a file outside the models directory (from --model PATH)."""
        path = path.expanduser().resolve()
        if not path.is_file():
            raise ModelNotFound(str(path))
        if path not in self.extra:
            self.extra.append(path)
        return self._entry(path, None if not path.is_relative_to(self._root()) else self._root())

    def _root(self) -> Path:
        return self.models_dir.expanduser().resolve()

    def list(self) -> list[ModelEntry]:
        """Every model, sorted by id. Files that fail validation are listed as invalid."""
        entries: dict[str, ModelEntry] = {}
        root = self._root()
        files = sorted(root.rglob("*.gguf")) if root.is_dir() else []
        for path in files:
            if path.is_file():
                entry = self._entry(path, root)
                entries.setdefault(entry.id, entry)
        for path in self.extra:
            if path.is_file():
                entry = self._entry(path, root if path.is_relative_to(root) else None)
                entries.setdefault(entry.id, entry)
        return sorted(entries.values(), key=lambda e: e.id)

    def get(self, model: str) -> ModelEntry:
        """The entry for an id (case-insensitive); unknown ids are a 404, never a fallback."""
        wanted = model.strip().lower()
        for entry in self.list():
            if entry.id == wanted:
                return entry
        raise ModelNotFound(model)

    def usable(self, model: str) -> ModelEntry:
        entry = self.get(model)
        if entry.error:
            raise InvalidModelFile(
                f"model '{entry.id}' is not usable: {entry.error}", param="model"
            )
        return entry

    def _entry(self, path: Path, root: Path | None) -> ModelEntry:
        st = path.stat()
        header, error = self._header(path, (st.st_size, st.st_mtime_ns))
        return ModelEntry(
            id=model_id_for(path, root),
            path=path,
            size_bytes=st.st_size,
            created=int(st.st_mtime),
            header=header,
            error=error,
        )

    def _header(self, path: Path, stamp: tuple[int, int]) -> tuple[GGUFHeader | None, str | None]:
        with self._lock:
            cached = self._headers.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2]
        try:
            header: GGUFHeader | None = read_header(path)
            error = None
        except InvalidModelFile as exc:
            header, error = None, exc.message
        with self._lock:
            self._headers[path] = (stamp, header, error)
        return header, error
