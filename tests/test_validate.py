import subprocess
import sys

import pytest
from helpers import CORRUPTIONS, corrupt_copy, make_dataset

from datasets import EpisodeError
from datasets.validate import check_episode, validate_dir


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_corruption_is_caught_with_its_reason(tmp_path, kind):
    good = make_dataset(tmp_path / "src", num_episodes=1)[0]
    bad = corrupt_copy(good, tmp_path / f"{kind}.h5", kind)
    with pytest.raises(EpisodeError) as err:
        check_episode(bad)
    assert CORRUPTIONS[kind][1] in err.value.reason
    assert str(bad) in str(err.value)
    assert check_episode(good) == 40


def test_undecodable_image_needs_decoding(tmp_path):
    good = make_dataset(tmp_path, num_episodes=1)[0]
    bad = corrupt_copy(good, tmp_path / "bad.h5", "undecodable_image")
    assert check_episode(bad, decode_images=False) == 40
    with pytest.raises(EpisodeError, match="undecodable image"):
        check_episode(bad)


def test_missing_control_hz_attribute(tmp_path):
    import h5py

    path = make_dataset(tmp_path, num_episodes=1)[0]
    with h5py.File(path, "r+") as f:
        del f.attrs["control_hz"]
    with pytest.raises(EpisodeError, match="missing file attribute 'control_hz'"):
        check_episode(path)


def _run_validate(*args):
    return subprocess.run([sys.executable, "-m", "datasets.validate", *args], capture_output=True, text=True, timeout=300)


def test_cli_prints_one_line_per_bad_file_and_exits_1(tmp_path):
    root = tmp_path / "data set"  # a space survives the positional argument
    good = make_dataset(root, num_episodes=3)
    for kind in CORRUPTIONS:
        corrupt_copy(good[0], root / f"bad_{kind}.h5", kind)
    result = _run_validate(str(root), "progress=false")
    assert result.returncode == 1, result.stderr
    bad_lines = [line for line in result.stdout.splitlines() if line.startswith("BAD ")]
    assert len(bad_lines) == len(CORRUPTIONS)
    for kind, (_, reason) in CORRUPTIONS.items():
        assert any(f"bad_{kind}.h5: " in line and reason in line for line in bad_lines), kind
    assert result.stdout.strip().splitlines()[-1].endswith(f"3 good, {len(CORRUPTIONS)} bad")
    assert set(validate_dir(root, progress=False)) == {root / f"bad_{k}.h5" for k in CORRUPTIONS}


def test_cli_exits_0_on_a_clean_dataset(tmp_path):
    make_dataset(tmp_path, num_episodes=2)
    result = _run_validate(f"dir={tmp_path}", "progress=false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 good, 0 bad" in result.stdout


def test_cli_reports_a_missing_folder(tmp_path):
    result = _run_validate(str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: dataset folder {tmp_path / 'nope'} does not exist"
    result = _run_validate()
    assert result.returncode == 2 and "missing argument 'dir'" in result.stderr


def test_cli_refuses_a_folder_without_episodes(tmp_path):
    """An empty dataset is an error, not "0 good, 0 bad"."""
    (tmp_path / "notes.txt").write_text("no episodes here")
    result = _run_validate(str(tmp_path))
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == f"error: no .h5 episodes found in {tmp_path}"
