"""Byte-level BPE: train, save, load, and encode documents in batches.

The tokenizer has two special tokens, EOS (id 0) and PAD (id 1), and no post-processor: encoding
never appends EOS; the shard writer adds it after each document.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"
PAD = "<|pad|>"
EOS_ID = 0
PAD_ID = 1


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE of `vocab_size` tokens; the same texts in the same order give the same file."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.token_to_id(EOS) != EOS_ID or tok.token_to_id(PAD) != PAD_ID:
        raise RuntimeError("special tokens did not get ids 0 and 1")
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    """Write `tok` as a tokenizer.json (compact, so equal tokenizers give equal bytes)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path), pretty=False)


def load_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def encode_batch(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids (uint32) of each text, EOS not appended; encodes in parallel, without offsets."""
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.uint32) for e in encodings]
