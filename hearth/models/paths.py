"""Path safety for everything that names a file in the models directory.

Names arriving in a request or on the command line (a download or import name) are checked
segment by segment against a small alphabet, so `..`, absolute paths, backslashes, percent-
encoded separators and null bytes never become paths. Writes and deletes refuse to go through
a symlink; reads follow the links a user placed in the directory on purpose."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from hearth.errors import InsufficientStorage, InvalidRequestError, UnsafePath

# A segment starts with a letter or digit (so never '.', '..' or a hidden file) and holds
# only characters that mean nothing to a shell or a URL: no '%', '/', '\\', NUL.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
MAX_DEPTH = 4
DISK_MARGIN = 64 * 2**20  # never fill a disk to the last byte


def check_name(name: str, *, param: str = "name") -> str:
    """A relative file name, returned unchanged if it plainly stays inside the directory."""
    if not isinstance(name, str) or not name:
        raise UnsafePath("the name is empty", param=param)
    segments = name.split("/")
    if len(segments) > MAX_DEPTH or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise UnsafePath(
            f"unsafe name {name!r}: use letters, digits, '.', '_', '+' and '-', "
            "optionally in sub-folders separated by '/', with no segment starting with '.'",
            param=param,
        )
    return name


def _has_link_on_the_way(root: Path, path: Path) -> Path | None:
    """The first symlinked directory between root and path's parent, if any."""
    current = root
    for part in path.relative_to(root).parts[:-1]:
        current = current / part
        if current.is_symlink():
            return current
    return None


def new_file_target(root: Path, name: str, *, param: str = "name") -> Path:
    """Where a new file called `name` goes under root; refuses any symlink on the way."""
    check_name(name, param=param)
    root = root.resolve()
    target = root.joinpath(*name.split("/"))
    link = _has_link_on_the_way(root, target)
    if link is not None:
        raise UnsafePath(
            f"{name!r} would be written through the symlink {link.name!r}", param=param
        )
    if target.is_symlink():
        raise UnsafePath(f"{name!r} is a symlink; Hearth never writes through one", param=param)
    return target


def removable(root: Path, path: Path) -> Path:
    """path, if deleting it removes only an entry of the models directory itself.

    A symlink the user placed there is removed as a link (its target is untouched); a file
    reached through a symlinked folder, or outside the directory, is refused."""
    root = root.resolve()
    absolute = Path(os.path.abspath(path))
    outside = UnsafePath(
        f"{path.name} is not inside the models directory; Hearth deletes only there"
    )
    if not absolute.is_relative_to(root):
        raise outside
    link = _has_link_on_the_way(root, absolute)
    if link is not None:
        raise UnsafePath(
            f"{path.name} is reached through the symlink {link.name!r}; "
            "Hearth never deletes through a symlink"
        )
    if not absolute.parent.resolve().is_relative_to(root):
        raise outside
    return absolute


def check_free_space(folder: Path, needed: int) -> None:
    """InsufficientStorage unless `needed` bytes (plus a margin) fit in folder's filesystem."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + DISK_MARGIN > free:
        raise InsufficientStorage(
            f"not enough free disk space: {needed >> 20} MiB needed, {free >> 20} MiB free "
            f"in {probe}"
        )


def open_partial(path: Path, *, append: bool = False) -> int:
    """A file descriptor for a `.partial` file; O_NOFOLLOW: never writes through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        raise InvalidRequestError(f"cannot write {path.name}: {exc.strerror}") from exc
