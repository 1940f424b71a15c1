"""Token shards in datatrove's `.ds` format, written in large chunks and published atomically.

A shard `PREFIX_XXXXX.ds` is a flat little-endian array of token ids (uint16, or uint32 when the
vocabulary has more than 65,536 entries, datatrove's rule), each document followed by EOS (id 0).
Beside it, `.ds.index` holds the uint64 cumulative document end offsets (in tokens) and
`.ds.metadata` the tokenizer name, token size and token count, byte for byte as datatrove's
`TokenizedFile` writes them. Documents are never split across shards.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np

from pretrainlab.runs import commit
from pretrainlab.tokenize.tokenizer import EOS_ID

FLUSH_TOKENS = 1 << 22
TMP_SUFFIX = ".tmp"


def token_size_for(vocab_size: int) -> int:
    """Bytes per token: 2 while every id fits uint16, else 4 (datatrove's rule)."""
    return 4 if vocab_size > np.iinfo(np.uint16).max + 1 else 2


def _dtype(token_size: int) -> np.dtype:
    return np.dtype("<u4" if token_size == 4 else "<u2")


def _metric(count: int) -> str:
    """`humanize.metric(count, unit="T")` for a non-negative integer, as datatrove's metadata has it."""
    exponent = int(math.floor(math.log10(count))) if count else 0
    value = count / 10 ** (exponent // 3 * 3)
    digits = max(0, 2 - exponent % 3)
    if round(value, digits) >= 10 ** (exponent % 3 + 1):
        exponent += 1
        value = count / 10 ** (exponent // 3 * 3)
        digits = max(0, 2 - exponent % 3)
    prefix = "kMGTPEZYRQ"[exponent // 3 - 1] if exponent >= 3 else ""
    return f"{value:.{digits}f} {prefix}T"


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


def _files(path: Path) -> tuple[Path, Path, Path]:
    """A shard's index, metadata and token file, in the order they are published."""
    return path.with_name(path.name + ".index"), path.with_name(path.name + ".metadata"), path


def metadata_text(tokenizer_name: str, token_size: int, token_count: int) -> str:
    """The `.ds.metadata` content datatrove writes: `name|size`, the count, the count humanised."""
    return f"{tokenizer_name}|{token_size}\n{token_count}\n{_metric(token_count)}"


class ShardWriter:
    """Appends documents (token arrays) to numbered `.ds` shards of at most `max_tokens_per_shard` tokens.

    Everything is written under `*.tmp` names; `close()` renames them (the `.ds` last), so a killed
    run leaves no finished-looking shard.
    """

    def __init__(
        self,
        out_dir: Path,
        vocab_size: int,
        tokenizer_name: str,
        prefix: str = "shard",
        max_tokens_per_shard: int = 2**27,
    ):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.vocab_size = vocab_size
        self.tokenizer_name = tokenizer_name
        self.prefix = prefix
        self.max_tokens_per_shard = max_tokens_per_shard
        self.token_size = token_size_for(vocab_size)
        self.dtype = _dtype(self.token_size)
        self.n_docs = 0
        self.n_tokens = 0
        self._paths: list[Path] = []
        self._file: BinaryIO | None = None
        self._shard_tokens = 0
        self._ends: list[np.ndarray] = []
        self._buf: list[np.ndarray] = []
        self._buf_tokens = 0
        self._published = False

    def _path(self, i: int) -> Path:
        return self.out_dir / f"{self.prefix}_{i:05d}.ds"

    def add(self, tokens: np.ndarray) -> None:
        """Append one document and its EOS."""
        n = len(tokens) + 1
        if self._file is not None and self._shard_tokens + n > self.max_tokens_per_shard:
            self._finish_shard()
        if self._file is None:
            self._paths.append(self._path(len(self._paths)))
            self._file = open(_tmp(self._paths[-1]), "wb")
        self._buf.append(tokens)
        self._buf_tokens += n
        self._shard_tokens += n
        self.n_docs += 1
        self.n_tokens += n
        if self._buf_tokens >= FLUSH_TOKENS:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered documents, EOS after each, in one write; record their end offsets."""
        if not self._buf:
            return
        lengths = np.fromiter((len(t) + 1 for t in self._buf), dtype=np.int64, count=len(self._buf))
        ends = np.cumsum(lengths)
        out = np.empty(int(ends[-1]), dtype=np.uint32)
        start = 0
        for tokens, end in zip(self._buf, ends.tolist(), strict=True):
            out[start : end - 1] = tokens
            start = end
        out[ends - 1] = EOS_ID
        if int(out.max()) >= self.vocab_size:
            raise ValueError(f"token id {int(out.max())} out of range for vocab_size {self.vocab_size}")
        base = self._shard_tokens - self._buf_tokens
        self._ends.append(ends + base)
        assert self._file is not None
        self._file.write(out.astype(self.dtype, copy=False).tobytes())
        self._buf = []
        self._buf_tokens = 0

    def _finish_shard(self) -> None:
        """Flush and close the current shard; write its index and metadata (still under temporary names)."""
        self._flush()
        assert self._file is not None
        self._file.close()
        self._file = None
        index, metadata, _ = _files(self._paths[-1])
        np.concatenate(self._ends).astype("<u8").tofile(_tmp(index))
        _tmp(metadata).write_text(metadata_text(self.tokenizer_name, self.token_size, self._shard_tokens))
        self._ends = []
        self._shard_tokens = 0

    def close(self) -> list[Path]:
        """Finish the last shard and publish every shard; returns the `.ds` paths. Idempotent."""
        if self._published:
            return list(self._paths)
        if self._file is not None:
            try:
                self._finish_shard()
            except BaseException:
                self.abort()
                raise
        for path in self._paths:
            for name in _files(path):
                commit(_tmp(name), name)
        self._published = True
        return list(self._paths)

    def abort(self) -> None:
        """Remove every temporary file written so far."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for path in self._paths:
            for name in _files(path):
                _tmp(name).unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def shard_token_size(path: Path) -> int:
    """Bytes per token of the shard at `path`, from its `.metadata` file."""
    first_line = Path(str(path) + ".metadata").read_text().split("\n", 1)[0]
    return int(first_line.rsplit("|", 1)[1])


def read_shard(path: Path) -> np.ndarray:
    """The tokens of one `.ds` shard, memory-mapped read-only."""
    return np.memmap(path, dtype=_dtype(shard_token_size(path)), mode="r")
