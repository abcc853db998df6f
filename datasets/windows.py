"""Which frames make a clip: `history + future` frames every `frameskip` control steps, windows `stride` apart.

The frameskip is given, or derived per episode from its `control_hz` and a target `fps`
(round(control_hz / fps)); by default every control step is a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    history: int = 1  # frames of context
    future: int = 1  # frames to predict
    fps: float | None = None  # target frame rate (frameskip from each episode's control_hz) ...
    frameskip: int | None = None  # ... or a fixed frameskip; at most one of the two
    stride: int = 1  # control steps between the starts of consecutive clips of an episode

    def __post_init__(self) -> None:
        if self.history < 1 or self.future < 0:
            raise ValueError(f"need history >= 1 and future >= 0, got history={self.history} future={self.future}")
        if self.fps is not None and self.frameskip is not None:
            raise ValueError("give fps or frameskip, not both")
        if (self.fps is not None and self.fps <= 0) or (self.frameskip is not None and self.frameskip < 1):
            raise ValueError(f"fps must be > 0 and frameskip >= 1, got fps={self.fps} frameskip={self.frameskip}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @property
    def num_frames(self) -> int:
        return self.history + self.future

    def frameskip_for(self, control_hz: float) -> int:
        """Control steps between a clip's frames for an episode recorded at `control_hz`."""
        if self.frameskip is not None:
            return self.frameskip
        return max(1, int(round(control_hz / self.fps))) if self.fps is not None else 1

    def count(self, length: int, skip: int) -> int:
        """Number of clips in an episode of `length` steps (0 if it is too short for one)."""
        span = (self.num_frames - 1) * skip + 1
        return 0 if length < span else (length - span) // self.stride + 1

    def frames(self, window: int, skip: int) -> np.ndarray:
        """The control-step indices of clip `window` of an episode."""
        return window * self.stride + skip * np.arange(self.num_frames)
