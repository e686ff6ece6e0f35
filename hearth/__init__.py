"""Hearth: a local LLM server. `from hearth import Hearth` for the in-process library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hearth.client import Hearth

__all__ = ["Hearth", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `hearth --help` and `import hearth` stay instant.
    if name == "Hearth":
        from hearth.client import Hearth

        return Hearth
    raise AttributeError(name)
