"""Stop strings over a token stream: emit text as early as possible, never part of a stop string."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Holds back only the tail of the text that could still become a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Add generated text; returns (text safe to emit now, whether a stop string was hit)."""
        if not self._stops:
            return text, False
        held = self._held + text
        hits = [i for i in (held.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return held[: min(hits)], True
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
