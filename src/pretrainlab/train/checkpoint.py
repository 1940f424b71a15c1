"""Checkpoint files: a plain dict saved atomically as out_dir/checkpoints/step_XXXXXXX.pt.

The dict holds "model", "optimizer", "config", the step counters and "rng"; everything in it loads
with `torch.load(weights_only=True)`. A `latest` text file names the newest checkpoint; it is written
after the checkpoint itself, so a reader never follows it to a partial file.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrainlab.runs import LATEST, atomic_path, write_atomic

_NAME = re.compile(r"step_(\d{7,})\.pt")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def save_checkpoint(state: dict[str, Any], directory: Path, keep: int = 2) -> Path:
    """Save `state` as step_<global_step>.pt in `directory`, point `latest` at it, keep the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(state["global_step"])
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_atomic(directory / LATEST, path.name + "\n")
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink()
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint files in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(_NAME.fullmatch(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint `latest` names, else the highest-numbered one, else None."""
    pointer = directory / LATEST
    if pointer.is_file():
        named = directory / pointer.read_text().strip()
        if named.is_file():
            return named
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict[str, Any]:
    """Generator states of torch (CPU and CUDA), numpy and Python, in weights_only-loadable types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
