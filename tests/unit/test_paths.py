"""Names from requests and the command line never reach outside the models directory, and
writes and deletes never go through a symlink."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import InvalidRequestError, UnsafePath
from hearth.models.paths import check_name, new_file_target, open_partial, removable

UNSAFE = [
    "",
    "..",
    "../evil.gguf",
    "a/../../evil.gguf",
    "/etc/passwd",
    "..%2Fevil.gguf",
    "%2e%2e/evil.gguf",
    "sub\\..\\evil.gguf",
    "evil\x00.gguf",
    ".hidden.gguf",
    "a//b.gguf",
    "a/./b.gguf",
    "C:evil.gguf",
    "~/evil.gguf",
]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafePath):
        check_name(name)


@pytest.mark.parametrize("name", ["model.gguf", "Qwen2.5-0.5B-Q4_K_M.gguf", "family/m+1.gguf"])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name) == name


def test_new_files_never_go_through_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "models"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "link.gguf").symlink_to(outside / "x.gguf")
    assert new_file_target(root, "sub/new.gguf") == root.resolve() / "sub" / "new.gguf"
    with pytest.raises(UnsafePath, match="symlink"):
        new_file_target(root, "linkdir/new.gguf")
    with pytest.raises(UnsafePath, match="symlink"):
        new_file_target(root, "link.gguf")


def test_deletes_remove_links_not_targets_and_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "models"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    target = outside / "keep.gguf"
    target.write_bytes(b"x")
    (root / "link.gguf").symlink_to(target)
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    assert removable(root, root.resolve() / "link.gguf") == root.resolve() / "link.gguf"
    with pytest.raises(UnsafePath, match="symlink"):
        removable(root, root.resolve() / "linkdir" / "keep.gguf")
    with pytest.raises(UnsafePath, match="not inside"):
        removable(root, target)
    with pytest.raises(UnsafePath, match="not inside"):
        removable(root, root / ".." / "outside" / "keep.gguf")


def test_partial_files_are_never_opened_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (tmp_path / "x.gguf.partial").symlink_to(victim)
    for append in (False, True):
        with pytest.raises(InvalidRequestError, match="cannot write"):
            open_partial(tmp_path / "x.gguf.partial", append=append)
    assert not victim.exists()
