"""Stop strings over a token stream: emit text as early as possible, never part of a stop string."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Holds back only the tail of the text that could still become a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        # The stop string that was hit (the one that starts first), once one is.
        self.hit = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Add generated text; returns (text safe to emit now, whether a stop string was hit)."""
        if not self._stops:
            return text, False
        held = self._held + text
        hits = sorted((i, n, s) for n, s in enumerate(self._stops) if (i := held.find(s)) >= 0)
        if hits:
            self._held = ""
            at, _, self.hit = hits[0]
            return held[:at], True
        keep = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(held)), keep, -1):
                if held.endswith(stop[:size]):
                    keep = size
                    break
        self._held = held[len(held) - keep :]
        return held[: len(held) - keep], False

    def flush(self) -> str:
        """Text held back when the generation ended without a stop string."""
        held, self._held = self._held, ""
        return held
