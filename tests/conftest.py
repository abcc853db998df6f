import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)  # noqa: NPY002 - for code that still uses the global generator
    torch.manual_seed(0)
