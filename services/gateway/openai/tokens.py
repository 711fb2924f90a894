"""Token arrays in an embeddings request, read as text: what OpenAI's clients send is tokens of OpenAI's
cl100k_base encoding (LangChain's OpenAIEmbeddings tokenizes with tiktoken before it sends, by default).

The mesh's models have tokenizers of their own, so a token array is turned back into the text it
encodes, and that text is embedded. The vocabulary is cl100k_base.tiktoken.gz beside this module:
the file tiktoken loads for cl100k_base (openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken,
MIT, sha256 223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7), gzipped. Decoding is a
lookup of each token's bytes; no tokenizer runs.
"""

from __future__ import annotations

import base64
import gzip
from functools import cache
from pathlib import Path

VOCABULARY = Path(__file__).with_name("cl100k_base.tiktoken.gz")
# cl100k_base's special tokens: markers, not text; an embeddings request has no use for them.
SPECIAL_TOKENS = {100257: "<|endoftext|>", 100258: "<|fim_prefix|>", 100259: "<|fim_middle|>",
                  100260: "<|fim_suffix|>", 100276: "<|endofprompt|>"}  # fmt: skip


@cache
def _token_bytes() -> tuple[bytes, ...]:
    """Each token's bytes, indexed by token id (the file lists `base64(bytes) id`, ids 0..n-1 in order)."""
    lines = gzip.decompress(VOCABULARY.read_bytes()).splitlines()
    return tuple(base64.b64decode(line.split()[0]) for line in lines if line)


class UnknownToken(ValueError):
    """A token id that cl100k_base does not have (or one of its special tokens)."""

    def __init__(self, token: int) -> None:
        name = SPECIAL_TOKENS.get(token)
        super().__init__(
            f"token {token} is cl100k_base's special token {name}, not text"
            if name
            else f"token {token} is not in cl100k_base's vocabulary (0-{len(_token_bytes()) - 1})"
        )


def decode(tokens: list[int]) -> str:
    """The text cl100k_base tokens encode (bytes that are not UTF-8 become U+FFFD, as tiktoken's decode)."""
    vocabulary = _token_bytes()
    pieces = []
    for token in tokens:
        if not 0 <= token < len(vocabulary):
            raise UnknownToken(token)
        pieces.append(vocabulary[token])
    return b"".join(pieces).decode("utf-8", errors="replace")
