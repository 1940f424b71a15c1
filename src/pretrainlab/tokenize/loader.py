"""A deterministic, resumable batch loader over `.ds` shards: the batch is a pure function of the step.

Windows are cut exactly as datatrove's `DatatroveFileDataset` cuts them: per file, non-overlapping
windows of `seq_len + 1` tokens at offsets `i * (seq_len + 1)`, the tail dropped. The global window
list is the concatenation over files in the order given. Epoch `k` visits the windows in the order
of a permutation drawn from `np.random.default_rng([seed, k])` (or sequentially without shuffle),
and epochs follow each other indefinitely. Global step `s` takes the positions
`s * B * world_size + rank * B + [0, B)` of that epoch-wrapped order, so ranks read disjoint slices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrainlab.tokenize.shards import read_shard


class TokenLoader:
    """Batches of `(input, target)` windows from memory-mapped shards."""

    def __init__(
        self,
        shard_paths: list[Path],
        seq_len: int,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.step = 0
        self._tokens = [read_shard(Path(p)) for p in shard_paths]
        counts = [len(t) // (seq_len + 1) for t in self._tokens]
        self._starts = np.cumsum([0, *counts])
        self._n = int(self._starts[-1])
        if self._n == 0:
            raise ValueError(f"no window of {seq_len + 1} tokens in {len(shard_paths)} shard(s)")
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        """Number of windows in one epoch."""
        return self._n

    @property
    def tokens_per_step(self) -> int:
        """Input tokens one global step consumes, over all ranks."""
        return self.batch_size * self.seq_len * self.world_size

    @property
    def epoch(self) -> int:
        """The epoch the next batch (at `self.step`) starts in."""
        return self.step * self.batch_size * self.world_size // self._n

    def window(self, i: int) -> np.ndarray:
        """The `seq_len + 1` raw tokens of global window `i` (sequential index)."""
        if not 0 <= i < self._n:
            raise IndexError(f"window {i} outside [0, {self._n})")
        f = int(np.searchsorted(self._starts, i, side="right")) - 1
        offset = (i - int(self._starts[f])) * (self.seq_len + 1)
        return self._tokens[f][offset : offset + self.seq_len + 1]

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self._n)
            self._perm_epoch = epoch
        return self._perm

    def window_ids(self, step: int) -> np.ndarray:
        """Global window indices of this rank's batch at `step`."""
        positions = step * self.batch_size * self.world_size + self.rank * self.batch_size
        positions = positions + np.arange(self.batch_size)
        if not self.shuffle:
            return positions % self._n
        epochs, within = np.divmod(positions, self._n)
        ids = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs).tolist():
            sel = epochs == epoch
            ids[sel] = self._order(epoch)[within[sel]]
        return ids

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(input, target)` int64 tensors of shape `(batch_size, seq_len)` for global step `step`."""
        windows = np.stack([self.window(i) for i in self.window_ids(step).tolist()]).astype(np.int64)
        return torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy())

    def iterate(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches from `start_step` on, indefinitely; `self.step` is the step of the next batch."""
        self.step = start_step
        while True:
            out = self.batch(self.step)
            self.step += 1
            yield out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate(self.step)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Resume at `d["step"]` with `d["seed"]`; the epoch follows from the step."""
        self.step = int(d["step"])
        self.seed = int(d["seed"])
        self._perm_epoch = -1
