"""What makes a training run resumable: its state file and its step log.

``checkpoint.pt`` holds everything the next step depends on (the adapter and the dense head,
AdamW's and the schedule's state, the position in the pair order, the validations so far). It
is written atomically (temporary file, fsync, rename), so ``kill -9`` at any moment leaves the
previous state whole, and read with ``torch.load(weights_only=True)``. Every random draw of a
step is seeded by the run's seed and the step's position (not by a generator carried along), so
a resumed run repeats exactly the steps an uninterrupted one would take.

``train_log.jsonl`` has a line per optimiser step (position, loss, learning rate), appended and
fsync'd; on resume the lines past the checkpoint are dropped (they are recomputed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..io import WriteError, atomic_write_bytes
from ..weights import WeightsFileError

__all__ = ["CHECKPOINT", "STEP_LOG", "save_state", "load_state", "StepLog", "step_seed"]

CHECKPOINT = "checkpoint.pt"
STEP_LOG = "train_log.jsonl"


def step_seed(seed: int, place: int, stream: int = 0) -> int:
    """A 63-bit seed for one pair's random draws (dropout, flow noise), from the run's seed, the
    pair's place in the run and a stream number."""
    text = f"{seed}|{place}|{stream}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a training state atomically (the previous file stays whole until the rename)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The saved state, or ``None`` when there is none; a damaged file raises
    :class:`~corr.weights.WeightsFileError` naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsFileError(
            f"{path}: the training state cannot be read ({type(err).__name__}: {err}); "
            "delete it to start the run over"
        ) from None
    if not isinstance(state, dict) or "position" not in state:
        raise WeightsFileError(f"{path}: not a corr training state; delete it to start over")
    return state


class StepLog:
    """``train_log.jsonl``: one JSON line per optimiser step, appended and fsync'd."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        """The logged steps (a torn last line, from a kill mid-write, is left out)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break
            try:
                out.append(json.loads(line))
            except ValueError:
                break
        return out

    def keep_until(self, position: int) -> None:
        """Keep the lines of the steps done by ``position`` pairs (those a checkpoint at
        ``position`` holds) and drop the later ones (recomputed on resume), atomically."""
        kept = [e for e in self.entries() if e["position"] <= position]
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in kept)
        atomic_write_bytes(self.path, text.encode())

    def append(self, entry: dict[str, Any]) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise WriteError(self.path, err) from None
