"""Checks on a whole model before llama.cpp or the models directory gets it: every file's
header (gguf_header), and for a split model, that its parts are all there and agree."""

from __future__ import annotations

from pathlib import Path

from hearth.models.gguf_header import GGUFError, GGUFHeader, read_header
from hearth.models.scan import FoundModel, model_id_for, split_info


def split_part_names(stem: str, count: int) -> list[str]:
    """File names of a split model's parts, as llama.cpp's gguf-split writes them."""
    return [f"{stem}-{n:05d}-of-{count:05d}.gguf" for n in range(1, count + 1)]


def found_at(path: Path, model_id: str | None) -> FoundModel:
    """A model named by path; a split model's sibling parts come along."""
    info = split_info(path)
    base_id = model_id or model_id_for(path, None)
    if info is None or info[2] == 1:
        return FoundModel(base_id, (path,), 1)
    stem, _, count = info
    names = [path.parent / name for name in split_part_names(stem, count)]
    present = tuple(p for p in names if p.is_file())
    missing = tuple(n for n, p in enumerate(names, 1) if not p.is_file())
    return FoundModel(base_id, present or (path,), count, missing)


def split_problem(found: FoundModel, headers: list[GGUFHeader]) -> str | None:
    """What is wrong with a model's set of parts, if anything (headers: one per part)."""
    if found.missing:
        missing = ", ".join(str(n) for n in found.missing)
        return f"split model is missing part(s) {missing} of {found.split_count}"
    if found.split_count == 1:
        split = headers[0].split if headers else None
        if split is not None:
            return (
                f"file is part {split[0] + 1} of a {split[1]}-part split model; "
                "the other parts are missing"
            )
        return None
    for i, header in enumerate(headers):
        if header.split != (i, found.split_count):
            says = (
                "not a split part"
                if header.split is None
                else f"part {header.split[0] + 1} of {header.split[1]}"
            )
            return f"part {i + 1} ({header.path.name}) says it is {says}"
    expected = headers[0].metadata.get("split.tensors.count") if headers else None
    total = sum(len(h.tensors) for h in headers)
    if isinstance(expected, int) and expected != total:
        return f"split model should hold {expected} tensors, its parts hold {total}"
    return None


def validate_model(found: FoundModel) -> list[GGUFHeader]:
    """Every part's header, or GGUFError naming the first problem."""
    headers = []
    for i, part in enumerate(found.parts):
        try:
            headers.append(read_header(part))
        except GGUFError as exc:
            where = f"part {i + 1} ({part.name}): " if found.split_count > 1 else ""
            raise GGUFError(where + exc.message) from None
    problem = split_problem(found, headers)
    if problem is not None:
        raise GGUFError(problem)
    return headers
