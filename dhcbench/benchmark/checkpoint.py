"""Checkpoint files: written atomically, read back onto any device.

``last.pt`` holds the full training state (networks, optimisers, AMP scaler, method extra
state such as weighting strategies, sampler and framework RNG states, loop position and
best-so-far bookkeeping); ``best.pt`` holds the method state of the best evaluation epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

LAST = "last.pt"
BEST = "best.pt"


def save(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (the trainer moves what it needs)."""
    return torch.load(Path(path), map_location="cpu", weights_only=False)
