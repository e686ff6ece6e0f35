"""The registry: which models exist, under which ids and aliases, with their header metadata.

Models come from a recursive scan of the models directory, from `[[models]]` config entries and
from `--model PATH`. Ids are derived from file names, so they stay stable across restarts; two
models that would share an id are told apart by a numeric suffix, in a fixed order (configured
ids first, then by path). Headers are read once per version of each file (size, mtime, ctime,
inode), and checked against the file again right before a load."""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import logging
import math
import mmap
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from hearth.errors import InvalidModelFile, ModelNotFound
from hearth.models.config import ModelConfig
from hearth.models.gguf_header import GGUFHeader, read_header
from hearth.models.saved import NameStore, SavedNames
from hearth.models.scan import FoundModel, group_files, model_id_for, projector_for, walk_gguf
from hearth.models.validate import found_at, split_problem

RESCAN_INTERVAL = 1.0  # seconds between two directory scans caused by unknown names

log = logging.getLogger("hearth.models")

__all__ = ["ModelEntry", "Registry", "model_id_for"]

# A file's version as far as validation cares: size, mtime, ctime (ns), inode. ctime is in it
# because utime can put an old mtime back but not an old ctime. None: the file cannot be read.
Stamp: TypeAlias = tuple[int, int, int, int] | None


def _version(st: os.stat_result) -> Stamp:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _stamp_of(path: Path) -> Stamp:
    """The file's current version (symlinks followed), or None if it cannot be read."""
    try:
        return _version(path.stat())
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model the server can serve (or could, were its file not broken)."""

    id: str
    path: Path  # what llama.cpp loads: the file, or a split model's first part
    size_bytes: int
    created: int
    header: GGUFHeader | None
    error: str | None  # why the model is unusable, when it is
    parts: tuple[Path, ...] = ()
    config: ModelConfig | None = None
    aliases: tuple[str, ...] = ()
    projector: Path | None = None
    n_params: int = 0
    stamps: tuple[Stamp, ...] = ()  # each part's version when it was validated

    @property
    def status(self) -> str:
        """`invalid` (with `error` saying why) or `available`."""
        return "invalid" if self.error else "available"

    @property
    def backend(self) -> str:
        """What serves it: `llamacpp` (a local file) or `openai` (an upstream server)."""
        return self.config.backend if self.config is not None else "llamacpp"

    @property
    def upstream(self) -> bool:
        return self.config is not None and self.config.upstream


@dataclass(slots=True)
class _Candidate:
    found: FoundModel
    config: ModelConfig | None = None
    from_dir: bool = True
    problem: str | None = None  # known wrong before any header is read
    extra_aliases: list[str] = field(default_factory=list)


class Registry:
    """Models in the models directory, in the config, and named explicitly at start-up."""

    def __init__(
        self,
        models_dir: Path,
        extra: list[Path] | None = None,
        configs: list[ModelConfig] | None = None,
    ):
        self.models_dir = models_dir
        self.extra = list(extra or [])
        self.configs = list(configs or [])
        self._lock = threading.Lock()
        self._headers: dict[Path, tuple[Stamp, GGUFHeader | None, str | None]] = {}
        self._snapshot: dict[str, ModelEntry] = {}
        self._scanned_at = -math.inf
        self._aliases: dict[str, str] = {}
        self._warned: set[str] = set()
        self._digests: dict[Path, tuple[Stamp, bytes]] = {}
        # Copies and created models (Ollama's /api/copy, /api/create), merged on every scan.
        self.saved = NameStore(self.root)

    def root(self) -> Path:
        """The models directory, resolved (it may itself be a symlink the user made)."""
        return self.models_dir.expanduser().resolve()

    def add_path(self, path: Path) -> ModelEntry:
        """Register a file outside the models directory (from --model PATH)."""
        path = path.expanduser().resolve()
        if not path.is_file():
            raise ModelNotFound(str(path))
        if path not in self.extra:
            self.extra.append(path)
        for entry in self.list():
            if entry.path == path or (entry.parts and entry.parts[0].resolve() == path):
                return entry
        raise ModelNotFound(str(path))  # pragma: no cover - a file that vanished meanwhile

    # -- listing --------------------------------------------------------------------------------

    def list(self) -> builtins.list[ModelEntry]:
        """Every model, sorted by id. Files that fail validation are listed as invalid."""
        entries = self._scan()
        ids = {e.id for e in entries}
        aliases: dict[str, str] = {}
        for entry in entries:
            for alias in entry.aliases:
                if alias in ids or alias in aliases:
                    self._warn_once(alias, f"alias {alias!r} of {entry.id} is already taken")
                    continue
                aliases[alias] = entry.id
        with self._lock:
            self._snapshot = {e.id: e for e in entries}
            self._aliases = aliases
            self._scanned_at = time.monotonic()
        return entries

    def _may_rescan(self) -> bool:
        """An unknown name rescans the directory (a file copied in a moment ago is found), but
        at most once per RESCAN_INTERVAL: a flood of bad names is not a flood of scans."""
        with self._lock:
            return time.monotonic() - self._scanned_at >= RESCAN_INTERVAL

    def projectors(self) -> builtins.list[Path]:
        """Multimodal projector files found in the models directory (not models themselves)."""
        root = self.root()
        return group_files(walk_gguf(root), root)[1] if root.is_dir() else []

    def get(self, model: str) -> ModelEntry:
        """The entry for an id or alias (case-insensitive); unknown names are a 404, never a
        fallback. Names are only compared with known ids: none ever becomes a path. Ollama's
        default tag is no tag: `name:latest` is `name`."""
        wanted = model.strip().lower().removesuffix(":latest")
        with self._lock:
            entry = self._lookup(wanted)
        if (entry is None or not entry.path.exists()) and self._may_rescan():
            self.list()
            with self._lock:
                entry = self._lookup(wanted)
        if entry is None:
            raise ModelNotFound(model)
        return entry

    def usable(self, model: str) -> ModelEntry:
        """The entry, if its files pass validation as they are now; else a 422 naming the
        problem."""
        return self.checked(self.get(model))

    def checked(self, entry: ModelEntry) -> ModelEntry:
        """The entry as its files are now, or a 422 naming what is wrong with them. A file
        truncated or replaced since it was validated (size, mtime, ctime or inode changed) makes
        the registry scan again, which re-reads the changed headers only; a file that went bad
        is then listed as invalid too. Costs one stat per part when nothing changed."""
        if tuple(_stamp_of(p) for p in entry.parts) != entry.stamps:
            self.list()
            with self._lock:
                fresh = self._snapshot.get(entry.id)
            if fresh is None:
                raise ModelNotFound(entry.id)
            entry = fresh
        if entry.error:
            raise InvalidModelFile(
                f"model '{entry.id}' is not usable: {entry.error}", param="model"
            )
        return entry

    def digest(self, entry: ModelEntry) -> str:
        """A sha256 (hex) that names this version of the model, cheap enough for every listing:
        over each part's header bytes (metadata and tensor layout, not the weights) and size,
        cached per file version, then the model's settings. Not the file's own sha256."""
        total = hashlib.sha256()
        for part, stamp in zip(entry.parts, entry.stamps, strict=False):
            total.update(self._part_digest(part, stamp))
        if entry.config is not None:
            settings = entry.config.model_dump(mode="json", exclude={"aliases"})
            total.update(json.dumps(settings, sort_keys=True).encode())
        return total.hexdigest()

    def _part_digest(self, part: Path, stamp: Stamp) -> bytes:
        with self._lock:
            cached = self._digests.get(part)
            header = self._headers.get(part)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        digest = hashlib.sha256(str(stamp[0] if stamp else 0).encode())
        end = header[1].data_offset if header and header[0] == stamp and header[1] else 0
        try:
            with part.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
                digest.update(m[: end or min(len(m), 1 << 20)])
        except (OSError, ValueError):
            pass  # unreadable (the entry says so): the size alone
        with self._lock:
            self._digests[part] = (stamp, digest.digest())
        return digest.digest()

    def _lookup(self, wanted: str) -> ModelEntry | None:
        entry = self._snapshot.get(wanted)
        if entry is None and wanted in self._aliases:
            entry = self._snapshot.get(self._aliases[wanted])
        return entry

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    # -- scanning -------------------------------------------------------------------------------

    def _scan(self) -> builtins.list[ModelEntry]:
        root = self.root()
        found, projectors = group_files(walk_gguf(root) if root.is_dir() else [], root)
        candidates = [_Candidate(f) for f in found]
        by_real: dict[str, _Candidate] = {}
        for c in candidates:
            by_real.setdefault(os.path.realpath(c.found.path), c)
        for cfg in self.configs:
            self._attach(cfg, candidates, by_real)
        saved = self.saved.read()
        for model in saved.models:
            cfg = model.config.relative_to(root)
            if model.owns_file:
                self._attach(cfg, candidates, by_real)
            elif cfg.path is not None:
                # Never attached to the file's own entry: that model keeps its name.
                candidate = _Candidate(found_at(cfg.path, cfg.id), cfg, from_dir=False)
                if not cfg.path.is_file():
                    candidate.problem = f"file not found: {cfg.path}"
                candidates.append(candidate)
        for path in self.extra:
            if os.path.realpath(path) not in by_real and path.is_file():
                candidate = _Candidate(found_at(path, None), from_dir=False)
                by_real[os.path.realpath(path)] = candidate
                candidates.append(candidate)
        entries = []
        for model_id, candidate in _assign_ids(candidates):
            entry = self._entry(model_id, candidate, projectors)
            if entry.header is not None and entry.header.architecture == "clip":
                continue  # a projector under a name without 'mmproj'
            entries.append(entry)
        return sorted(_with_copies(entries, saved), key=lambda e: e.id)

    def _attach(
        self,
        cfg: ModelConfig,
        candidates: builtins.list[_Candidate],
        by_real: dict[str, _Candidate],
    ) -> None:
        """Join a config entry to the file it names, or add it as a model of its own."""
        if cfg.upstream:  # no file: served by another server
            assert cfg.id is not None
            candidates.append(_Candidate(FoundModel(cfg.id, (), 1), cfg, from_dir=False))
            return
        if cfg.path is None:
            match = next((c for c in candidates if c.found.base_id == cfg.id and c.from_dir), None)
            if match is not None:
                match.config = cfg
                return
            assert cfg.id is not None
            candidate = _Candidate(FoundModel(cfg.id, (), 1), cfg, from_dir=False)
            candidate.problem = "no file with this id in the models directory, and no path given"
            candidates.append(candidate)
            return
        path = cfg.path
        match = by_real.get(os.path.realpath(path))
        if match is not None and match.config is None:
            match.config = cfg
            return
        candidate = _Candidate(found_at(path, cfg.id), cfg, from_dir=False)
        if not path.is_file():
            candidate.problem = f"file not found: {path}"
        candidates.append(candidate)
        by_real.setdefault(os.path.realpath(path), candidate)

    def _entry(self, model_id: str, c: _Candidate, projectors: builtins.list[Path]) -> ModelEntry:
        found = c.found
        headers: builtins.list[GGUFHeader] = []
        problem = c.problem
        size, created = 0, 0
        # Every part's version is kept, so `checked` can tell whether any changed since.
        stamps: builtins.list[Stamp] = []
        for i, part in enumerate(found.parts):
            try:
                st = part.stat()
            except OSError as exc:
                stamps.append(None)
                problem = problem or f"cannot read {part.name}: {exc.strerror}"
                continue
            stamp = _version(st)
            stamps.append(stamp)
            size += st.st_size
            created = created or int(st.st_mtime)
            if problem is not None:
                continue
            header, error = self._header(part, stamp)
            if error is not None or header is None:
                problem = f"part {i + 1} ({part.name}): {error}" if found.split_count > 1 else error
                continue
            headers.append(header)
        if problem is None:
            problem = split_problem(found, headers)
        header = headers[0] if headers and problem is None else None
        aliases = tuple(c.config.aliases) if c.config else ()
        shown = c.config.path if c.config and c.config.path else Path(model_id)
        return ModelEntry(
            id=model_id,
            path=found.path if found.parts else shown,
            size_bytes=size,
            created=created,
            header=header,
            error=problem,
            parts=found.parts,
            config=c.config,
            aliases=aliases,
            projector=projector_for(found.path, projectors) if found.parts else None,
            n_params=sum(t.n_elements for h in headers for t in h.tensors) if header else 0,
            stamps=tuple(stamps),
        )

    def _header(self, path: Path, stamp: Stamp) -> tuple[GGUFHeader | None, str | None]:
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


def _with_copies(entries: list[ModelEntry], saved: SavedNames) -> list[ModelEntry]:
    """Each copy becomes an alias of the model it names (one that is gone is left out)."""
    copies: dict[str, list[str]] = {}
    for copy in saved.copies:
        copies.setdefault(copy.target, []).append(copy.name)
    return [
        dataclasses.replace(e, aliases=(*e.aliases, *copies[e.id])) if e.id in copies else e
        for e in entries
    ]


def _assign_ids(candidates: list[_Candidate]) -> list[tuple[str, _Candidate]]:
    """Distinct ids: configured ids first, then by path; a clash gets '-2', '-3'..."""

    def wanted(c: _Candidate) -> str:
        return c.config.id if c.config and c.config.id else c.found.base_id

    ordered = sorted(
        candidates,
        key=lambda c: (not (c.config and c.config.id), str(c.found.path) if c.found.parts else ""),
    )
    reserved = {wanted(c) for c in candidates}
    taken: set[str] = set()
    out = []
    for c in ordered:
        model_id = wanted(c)
        if model_id in taken:
            n = 2
            while f"{model_id}-{n}" in taken or f"{model_id}-{n}" in reserved:
                n += 1
            model_id = f"{model_id}-{n}"
        taken.add(model_id)
        out.append((model_id, c))
    return out
