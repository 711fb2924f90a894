"""Turn templates: how a model expects chat messages laid out as text."""

from __future__ import annotations

from collections.abc import Sequence

from services.inference.backends.base import Message

GEMMA_END_OF_TURN = "<end_of_turn>"


GEMMA_START_OF_TURN = "<start_of_turn>"

# A rendered prompt is a list of pieces; `special` pieces are control tokens. Message content is
# never parsed for control tokens, so a user cannot forge a turn by typing "<end_of_turn>".
Piece = tuple[str, bool]


def render_gemma(messages: Sequence[Message]) -> list[Piece]:
    """Gemma's turn format. It has no system role, so system text leads the first user turn.

    The BOS token is not included: the tokenizer adds it.
    """
    pieces: list[Piece] = []
    system = "\n\n".join(m.content for m in messages if m.role == "system")

    def turn(role: str, content: str) -> None:
        pieces.extend(
            [
                (GEMMA_START_OF_TURN, True),
                (f"{role}\n{content}", False),
                (GEMMA_END_OF_TURN, True),
                ("\n", False),
            ]
        )

    for message in messages:
        if message.role == "system":
            continue
        content = message.content
        if system and message.role == "user":
            content, system = f"{system}\n\n{content}", ""
        turn("model" if message.role == "assistant" else "user", content)
    if system:  # only a system message was given
        turn("user", system)
    pieces.extend([(GEMMA_START_OF_TURN, True), ("model\n", False)])
    return pieces
