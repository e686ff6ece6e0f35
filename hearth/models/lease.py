"""Leases: a request's hold on a loaded model. A model with a lease out is never evicted.

A lease is released when the request ends: at the end of a `with` block, or, for a stream,
when the stream is exhausted, fails, is closed or is garbage-collected unstarted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from hearth.models.manager import LoadedModel

T = TypeVar("T")


class Lease:
    """Keeps `model` loaded until release(); idempotent, safe to call from a finalizer."""

    __slots__ = ("_handed_over", "_on_release", "model")

    def __init__(self, model: LoadedModel, on_release: Callable[[LoadedModel], None]):
        self.model = model
        self._on_release: Callable[[LoadedModel], None] | None = on_release
        self._handed_over = False

    def release(self) -> None:
        """Let the model go idle (its keep-alive timer starts when no lease is left)."""
        callback, self._on_release = self._on_release, None
        if callback is not None:
            callback(self.model)

    def hold(self, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """Hand the lease to a stream: it is released when the stream ends, not before."""
        self._handed_over = True
        return HeldStream(stream, self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._handed_over or exc[0] is not None:
            self.release()


class HeldStream(Generic[T]):
    """An async iterator that releases its lease when it ends, is closed, or is dropped."""

    __slots__ = ("_lease", "_stream")

    def __init__(self, stream: AsyncIterator[T], lease: Lease):
        self._stream = stream
        self._lease = lease

    def __aiter__(self) -> HeldStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._stream.__anext__()
        except BaseException:
            # Exhausted, failed or cancelled: the generation behind it is over either way.
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the wrapped stream (cancelling its generation) and release the lease."""
        try:
            close: Any = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()
        finally:
            self._lease.release()

    def __del__(self) -> None:
        # A stream that was never iterated (the client left before the response started)
        # must not keep its model pinned forever.
        self._lease.release()
