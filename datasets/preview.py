"""Write a video of an episode: `python -m datasets.preview FILE [out=clip.gif camera=... fps=...]`.

MP4 through imageio's ffmpeg plugin, or GIF by the output's suffix. Frames are
read one at a time, so long episodes do not need to fit in memory.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from datasets.reader import EpisodeReader


def write_preview(episode: str | Path, out: str | Path | None = None, camera: str | None = None,
                  fps: float | None = None, scale: int = 1) -> Path:
    """Render `episode` to `out` (default: beside it, `.mp4`); returns the path written."""
    episode = Path(episode)
    out = Path(out) if out else episode.with_suffix(".mp4")
    with EpisodeReader(episode) as ep:
        cameras = ep.cameras
        camera = camera or cameras[0]
        if camera not in cameras:
            raise ValueError(f"{episode}: no camera '{camera}' (has {cameras})")
        fps = fps or ep.control_hz
        suffix = out.suffix.lower()
        if suffix not in (".mp4", ".gif"):
            raise ValueError(f"preview output must end in .mp4 or .gif, got {out.name}")
        kwargs = {"fps": fps, "format": "ffmpeg", "macro_block_size": 1} if suffix == ".mp4" else {
            "duration": 1000.0 / fps, "loop": 0}
        tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with imageio.get_writer(tmp, **kwargs) as writer:
                for t in range(len(ep)):
                    frame = ep.images(camera, [t])[0]
                    if scale > 1:
                        frame = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
                    writer.append_data(frame)
        tmp.replace(out)
    return out


def main(cfg) -> None:
    path = write_preview(cfg.file, cfg.out, cfg.camera, cfg.fps, cfg.scale)
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run

    run(main, "preview", positional=("file", "out"))
