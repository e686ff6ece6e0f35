"""Finding models on disk: a recursive walk that groups split files and sets projectors aside.

Split models (`name-00001-of-00003.gguf`) are one model whose id comes from `name`; llama.cpp
loads them from the first part. Multimodal projectors (`mmproj` in the name) are not models."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SPLIT_NAME = re.compile(r"(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FoundModel:
    """A model file, or the parts of a split model, as found on disk."""

    base_id: str  # the id before two models that share it are told apart
    parts: tuple[Path, ...]  # the files, first part first (only those that exist)
    split_count: int  # 1 for a single file
    missing: tuple[int, ...] = ()  # 1-based numbers of the parts that are not there

    @property
    def path(self) -> Path:
        """What llama.cpp is given: the file, or the first part present."""
        return self.parts[0]


def is_projector(path: Path) -> bool:
    """Multimodal projector files are named with 'mmproj' by every converter in use."""
    return "mmproj" in path.name.lower()


def split_info(path: Path) -> tuple[str, int, int] | None:
    """(stem, part number, part count) for `name-00002-of-00003.gguf`, else None."""
    m = SPLIT_NAME.fullmatch(path.name)
    if m is None or int(m["count"]) < 1 or not 1 <= int(m["no"]) <= int(m["count"]):
        return None
    return m["stem"], int(m["no"]), int(m["count"])


def model_id_for(path: Path, root: Path | None) -> str:
    """A readable, stable id: the file name without .gguf (and without a split suffix),
    lower-cased, under its sub-folder if any."""
    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else None
    parts = list(rel.parts) if rel is not None else [path.name]
    info = split_info(path)
    parts[-1] = info[0] if info else parts[-1].removesuffix(".gguf").removesuffix(".GGUF")
    return "/".join(parts).lower()


def walk_gguf(root: Path) -> list[Path]:
    """Every .gguf file under root, following symlinked folders once; hidden entries skipped."""
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop, or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.lower().endswith(".gguf") and not name.startswith("."):
                path = Path(dirpath) / name
                if path.is_file():
                    found.append(path)
    return sorted(found)


def group_files(paths: list[Path], root: Path | None) -> tuple[list[FoundModel], list[Path]]:
    """(models, projectors): split parts grouped by folder and stem, projectors apart."""
    models: list[FoundModel] = []
    projectors: list[Path] = []
    splits: dict[tuple[Path, str, int], dict[int, Path]] = {}
    for path in paths:
        if is_projector(path):
            projectors.append(path)
            continue
        info = split_info(path)
        if info is None or info[2] == 1:
            models.append(FoundModel(model_id_for(path, root), (path,), 1))
            continue
        stem, no, count = info
        splits.setdefault((path.parent, stem.lower(), count), {})[no] = path
    for (_, _, count), parts in splits.items():
        ordered = tuple(parts[n] for n in sorted(parts))
        missing = tuple(n for n in range(1, count + 1) if n not in parts)
        models.append(FoundModel(model_id_for(ordered[0], root), ordered, count, missing))
    return models, projectors


def projector_for(model: Path, projectors: list[Path]) -> Path | None:
    """The projector in the model's folder: the only one, or the one sharing most of its name."""
    here = [p for p in projectors if p.parent == model.parent]
    if len(here) <= 1:
        return here[0] if here else None

    def shared(p: Path) -> int:
        a, b = p.name.lower(), model.name.lower()
        return next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )

    return max(here, key=shared)
