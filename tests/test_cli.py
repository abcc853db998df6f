"""The front door: `--help` pages built from the YAML comments, and bad overrides answered in one line before
anything heavy is imported."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from common.cli import CONFIG_DIR, _settings, help_text

ROOT = Path(__file__).resolve().parents[1]
#: every command and the config it runs on (benchmarks aside)
COMMANDS = {"collect": "recipes.collect", "validate": "datasets.validate", "index": "datasets.index",
            "convert_droid": "datasets.convert_droid", "preview": "datasets.preview", "pretrain": "world_model/pretrain.py",
            "cache_features": "world_model/cache_features.py", "probe": "world_model/probe.py",
            "train": "world_model/train.py", "cem_goal": "planners/cem_goal.py", "evaluate": "planners/evaluate.py",
            "serve": "planners/serve.py", "run_robot": "planners/run_robot.py", "recipe": "recipes/franka.py",
            "tune_lambda": "world_model/tune_lambda.py", "readout_check": "planners/readout_check.py"}


def _cli(command: str, *args: str) -> subprocess.CompletedProcess:
    """Run a command with `-X importtime`, so that a test can tell what it imported."""
    head = ["-m", command] if "/" not in command else [str(ROOT / command)]
    return subprocess.run([sys.executable, "-X", "importtime", *head, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def _imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


@pytest.mark.parametrize("config", sorted(COMMANDS) + ["model/lewm", "model/vjepa_ac", "model/vjepa2_ac", "model/cjepa"])
def test_every_setting_of_every_command_is_on_its_help_page(config):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config)
    page = help_text(config)
    assert page.startswith("usage: ") and "hydra/" not in page and "Powered by Hydra" not in page
    for key, value, section in _settings(OmegaConf.to_container(cfg, resolve=False)):
        assert section or f"  {key}=" in page, key
        assert "#" not in str(value), (key, value)  # a comment glued to its value (`0.4# ...`) becomes the value


def test_help_has_usage_arguments_meanings_and_no_heavy_imports():
    result = _cli("datasets.validate", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    page = result.stdout.splitlines()
    assert page[0] == "usage: python -m datasets.validate DIR [key=value ...]"
    assert page[2].startswith("Check every episode of a dataset folder")
    assert any(line.split() == ["DIR", "dataset", "folder", "(searched", "recursively", "for", "*.h5)"] for line in page)
    assert any(line.split()[:1] == ["decode_images=true"] and "decompress every frame" in line for line in page)
    assert "Configuration groups" not in result.stdout and "config groups" not in result.stdout
    assert not _imported(result.stderr) & {"torch", "mujoco", "timm"}


def test_train_help_lists_its_groups_and_the_preset_values():
    result = _cli("world_model/train.py", "experiment=franka_lewm", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.splitlines()[0] == f"usage: python {ROOT / 'world_model/train.py'} [experiment=NAME] [model=NAME] [key=value ...]"
    assert "    franka_lewm " in out and "    lewm " in out and "    vjepa_ac " in out
    assert "franka_vjepa_pretrain" not in out  # a preset of pretrain.py
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "optim.steps=2000" in lines and "optimizer steps in all" in lines["optim.steps=2000"]
    assert "model.encoder.width=128" in lines and "data.root=???" in lines
    assert not _imported(result.stderr) & {"torch", "mujoco", "timm"}


@pytest.mark.parametrize("args,message", [
    (["optim.stepz=3"], "error: unknown setting optim.stepz (optim has: batch_size, decay, final_lr, grad_clip, lr, "
                        "start_lr, steps, warmup, weight_decay); to add a setting the config does not list, write "
                        "+optim.stepz=3"),
    (["model=lewn", "data.root=x"], "error: unknown model 'lewn'; options: cjepa, lewm, vjepa2_ac, vjepa_ac"),
    (["model=lewm"], "error: missing argument 'data.root' (usage: python " + str(ROOT / "world_model/train.py")
                     + " data.root=... [key=value ...]; --help lists the settings)"),
    (["optim.steps=[1,"], "error: cannot read the override: no viable alternative at input '[1,'"),
    (["+experiment=franka_lewm", "data.root=x"], "error: experiment is a config group: write experiment=franka_lewm "
                                                 "(without the +)"),
])
def test_a_bad_override_is_one_line_before_torch_loads(args, message):
    result = _cli("world_model/train.py", *args)
    assert result.returncode == 2
    errors = _errors(result.stderr)
    assert len(errors) == 1 and errors[0].startswith(message), errors
    assert not _imported(result.stderr) & {"torch", "mujoco", "timm"}


@pytest.mark.parametrize("value,fixed", [("{}", {}), ("[]", {}), ("null", {}), ("[6]", {6: 0.0}), ("{6: 1.0}", {6: 1.0})])
def test_fixed_dims_on_the_command_line_replaces_the_default(value, fixed):
    """Hydra merges a dict into a dict and refuses a dict over a list; `fixed_dims=` always replaces."""
    from common.cli import replacing_overrides
    from common.config import build_config
    from planners.factory import PlanConfig

    overrides = replacing_overrides("cem_goal", [f"fixed_dims={value}", "episodes=1"])
    assert overrides == ["~fixed_dims", f"+fixed_dims={value}", "episodes=1"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        assert build_config(PlanConfig, compose("cem_goal", overrides=overrides)).fixed() == fixed
    overrides = replacing_overrides("train", ["experiment=franka_lewm", "data.root=x", f"planning.fixed_dims={value}"])
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):  # a preset's planning section too
        train = compose("train", overrides=overrides)
    assert build_config(PlanConfig, {"fixed_dims": OmegaConf.to_container(train.planning)["fixed_dims"]}).fixed() == fixed
    assert replacing_overrides("train", ["planning.fixed_dims={}"]) == ["planning.fixed_dims={}"]  # no such key: hydra says so


@pytest.mark.parametrize("experiment,fixed", [
    ("franka_lewm", {3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0}),      # reach: rotations and gripper held
    ("pickplace_lewm", {3: 0.0, 4: 0.0}),                   # its base's yaw and gripper freed by null
    ("push_lewm", {3: 0.0, 4: 0.0, 5: 0.0, 6: 1.0}),        # fingers held closed
])
def test_a_preset_changes_single_held_dims_of_its_base(experiment, fixed):
    """Presets merge their `planning.fixed_dims` dict into their base's: a value changes a dim, null frees it."""
    from common.config import build_config
    from planners.factory import PlanConfig

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        train = compose("train", overrides=[f"experiment={experiment}", "data.root=x"])
    assert build_config(PlanConfig, {"fixed_dims": OmegaConf.to_container(train.planning)["fixed_dims"]}).fixed() == fixed
