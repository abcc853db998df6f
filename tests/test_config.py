"""Typed configs: hydra's config becomes dataclasses once; a typo is named with the valid keys."""

from dataclasses import dataclass, field

import pytest
from hydra import compose, initialize_config_dir
from omegaconf.errors import MissingMandatoryValue

from common.cli import CONFIG_DIR
from common.config import ConfigError, build_config
from planners.factory import PlanConfig
from world_model.models import JEPASettings, LeWMSettings
from world_model.train import train_config


@dataclass
class Inner:
    size: tuple[int, int] = (1, 2)


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


def test_nested_dataclasses_lists_and_tuples_are_built():
    config = build_config(Outer, {"name": "y", "inner": {"size": [3, 4]}, "items": [{"size": [5, 6]}]})
    assert config == Outer("y", Inner((3, 4)), [Inner((5, 6))])


def test_an_unknown_key_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown setting inner\.sise; valid: size"):
        build_config(Outer, {"inner": {"sise": [1, 1]}})


def _compose(name, overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(name, overrides=overrides)


def test_every_planning_config_builds_and_a_typo_is_refused():
    plan = build_config(PlanConfig, _compose("cem_goal", []))
    assert plan.solver.name == "icem" and plan.fixed() == {3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0}
    with pytest.raises(ConfigError, match="solver.sampels"):
        build_config(PlanConfig, _compose("cem_goal", ["+solver.sampels=10"]))
    assert build_config(PlanConfig, _compose("cem_goal", ["fixed_dims=[]"])).fixed() == {}  # a list is replaced,
    assert build_config(PlanConfig, _compose("cem_goal", ["fixed_dims=[6]"])).fixed() == {6: 0.0}  # never merged


def test_the_train_config_takes_the_family_settings_and_requires_its_data():
    lewm = train_config(_compose("train", ["model=lewm", "data.root=/data"]))
    assert isinstance(lewm.model, LeWMSettings) and lewm.model.clip_frames() == lewm.model.history + 1
    ac = train_config(_compose("train", ["data.root=/data", "model.encoder_checkpoint=/enc"]))
    assert isinstance(ac.model, JEPASettings) and ac.model.clip_frames() == ac.model.history + ac.model.rollout_steps
    with pytest.raises(MissingMandatoryValue):
        train_config(_compose("train", ["model=lewm"]))
    with pytest.raises(ConfigError, match="model.rollout_steps"):  # a V-JEPA setting is not a LeWM one
        train_config(_compose("train", ["model=lewm", "data.root=/data", "+model.rollout_steps=2"]))


def test_an_experiment_is_a_config_group_chosen_without_plus():
    """`experiment=franka_lewm` (as --help lists it) selects the laptop recipe: the small LeWM, 2000 steps."""
    config = train_config(_compose("train", ["experiment=franka_lewm", "data.root=/data"]))
    assert isinstance(config.model, LeWMSettings) and config.model.readout_weight == 0.5
    assert (config.model.encoder.depth, config.model.encoder.width, config.optim.steps) == (6, 128, 2000)
    assert config.out == "runs/franka_lewm"
    assert train_config(_compose("train", ["experiment=franka_lewm", "data.root=/d", "optim.steps=5"])).optim.steps == 5
    from world_model.pretrain import PretrainConfig

    pretrain = build_config(PretrainConfig, _compose("pretrain", ["experiment=franka_vjepa_pretrain", "data.root=/d"]))
    assert pretrain.num_frames == 2


def test_every_training_experiment_composes_and_its_planning_builds():
    """A typo in an experiment's `planning` would surface only when its checkpoint is evaluated, after the
    training run: compose every training experiment and build its planning into the planner's config now."""
    from omegaconf import OmegaConf

    from planners.factory import PLANNING_KEYS, merge_planning

    names = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml") if not p.stem.endswith("_pretrain"))
    assert {"franka_lewm", "reach_precise_lewm", "pickplace_lewm"} <= set(names)
    for name in names:
        cfg = _compose("train", [f"experiment={name}", "data.root=/d"])
        if "encoder_checkpoint" in cfg.model and OmegaConf.is_missing(cfg.model, "encoder_checkpoint"):
            cfg.model.encoder_checkpoint = "/enc"  # the frozen families' encoder, named on the command line
        train_config(cfg)
        planning = OmegaConf.to_container(cfg.planning) if cfg.get("planning") else {}
        assert set(planning) <= set(PLANNING_KEYS), name
        build_config(PlanConfig, merge_planning(OmegaConf.to_container(_compose("cem_goal", [])), planning))
    pickplace = train_config(_compose("train", ["experiment=pickplace_lewm", "data.root=/d"]))
    assert pickplace.model.encoder.img_size == 96 and tuple(pickplace.model.readout_dims) == (0, 1, 2, 5, 6)
