"""Pure helpers over token lists: shared prefixes and n-gram lookup."""

from __future__ import annotations


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two lists share."""
    n = min(len(a), len(b))
    i = 0
    # Compare in blocks first: list slices compare in C, far faster than a Python loop.
    while i + 64 <= n and a[i : i + 64] == b[i : i + 64]:
        i += 64
    while i < n and a[i] == b[i]:
        i += 1
    return i


NGRAM_SIZES = (3, 2)  # longest first: a longer match predicts better


class NgramIndex:
    """Where each n-gram of one sequence's history last ended, kept up to date as it grows."""

    __slots__ = ("_last", "_upto")

    def __init__(self) -> None:
        self._last: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in NGRAM_SIZES}
        self._upto = 0  # n-grams ending before this position are indexed

    def reset(self) -> None:
        for table in self._last.values():
            table.clear()
        self._upto = 0

    def propose(self, history: list[int], max_len: int) -> list[int]:
        """Tokens that followed an earlier occurrence of the history's last n-gram."""
        end = len(history) - 1
        if end < self._upto:  # the history was cut: start over
            self.reset()
        # Index every n-gram that ends before the last token, so a lookup of the current
        # suffix finds a strictly earlier occurrence.
        for n, table in self._last.items():
            for stop in range(max(self._upto, n - 1), end):
                table[tuple(history[stop - n + 1 : stop + 1])] = stop + 1
        self._upto = end
        for n in NGRAM_SIZES:
            if len(history) < n:
                continue
            follow = self._last[n].get(tuple(history[-n:]))
            if follow is not None:
                return history[follow : follow + max_len]
        return []
