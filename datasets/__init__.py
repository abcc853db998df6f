"""Droid-style HDF5 robot episodes: writer, lazy reader, validator, index, clip dataset, DROID converter.

Note: this top-level package is named `datasets`, so it shadows Hugging Face's
`datasets` when both are installed in one environment; keep them apart.
"""

from datasets.reader import EpisodeReader
from datasets.schema import EpisodeError
from datasets.writer import EpisodeWriter, write_episode

__all__ = ["ClipDataset", "EpisodeError", "EpisodeReader", "EpisodeWriter", "write_episode"]


def __getattr__(name: str):
    # the clip dataset pulls in torch; the command-line tools do not need it
    if name == "ClipDataset":
        from datasets.clips import ClipDataset

        return ClipDataset
    raise AttributeError(f"module 'datasets' has no attribute {name!r}")
