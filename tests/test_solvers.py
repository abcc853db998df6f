import numpy as np
import pytest
import torch

from planners.costs import LatentGoalCost, ReadoutGoalCost, rollout_cost
from planners.protocols import Bounds
from planners.solvers import make_solver
from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.encoder import EncoderConfig, VideoViT
from world_model.models import JEPAWorldModel

SOLVER_ARGS = {"cem": dict(samples=64, elites=8, iterations=4), "mppi": dict(samples=64, iterations=4),
               "gradient": dict(iterations=5, restarts=4), "icem": dict(samples=64, elites=8, iterations=4)}


class LinearToy:
    """z' = z + A a: the optimum of a one-step goal-reaching cost is known in closed form."""

    history = 1
    uses_states = False

    def __init__(self, a_matrix: torch.Tensor):
        self.a = a_matrix

    def rollout(self, z_context, actions, context_actions=None, states=None):
        z = z_context[:, -1]
        out = []
        for h in range(actions.shape[1]):
            z = z + (actions[:, h] @ self.a.T)[:, None]
            out.append(z)
        return torch.stack(out, dim=1)


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    encoder = VideoViT(EncoderConfig(size="micro", img_size=32, patch_size=8))
    predictor = ACPredictor(96, ACPredictorConfig(width=32, depth=1, num_heads=4, state_dim=7))
    for block in predictor.blocks:
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.05)
    return JEPAWorldModel(encoder, predictor, history=2).eval()


@pytest.mark.parametrize("name", sorted(SOLVER_ARGS))
def test_solvers_on_a_random_model_respect_bounds_shape_and_seed(random_model, name):
    z = torch.randn(2, 16, 96)
    cost = rollout_cost(random_model, z, [LatentGoalCost(torch.randn(16, 96))], states=torch.zeros(2, 7),
                        context_actions=torch.zeros(1, 7))
    bounds = Bounds.droid(fixed={3: 0.0, 4: 0.0, 5: 0.0})
    results = [make_solver(name, seed=3, **SOLVER_ARGS[name]).solve(cost, 3, bounds) for _ in range(2)]
    plan = results[0].actions
    assert plan.shape == (3, 7)
    assert torch.all(plan >= bounds.low - 1e-7) and torch.all(plan <= bounds.high + 1e-7)
    assert torch.all(plan[:, 3:6] == 0.0)  # rotation deltas held fixed
    torch.testing.assert_close(results[0].actions, results[1].actions, rtol=0, atol=0)
    if name != "gradient":  # (the gradient solver's first restart is the deterministic mean)
        other = make_solver(name, seed=4, **SOLVER_ARGS[name]).solve(cost, 3, bounds).actions
        assert not torch.equal(other, plan)


@pytest.mark.parametrize("name,tolerance", [("cem", 0.01), ("icem", 0.01), ("mppi", 0.01), ("gradient", 0.002)])
def test_solvers_reach_the_closed_form_optimum_of_a_linear_toy(name, tolerance):
    torch.manual_seed(1)
    a = torch.eye(3) + 0.3 * torch.randn(3, 3)
    model = LinearToy(a)
    z0 = torch.randn(1, 1, 3)
    a_star = torch.tensor([0.04, -0.02, 0.05])  # inside the 0.075 bounds
    goal = z0[0] + a_star @ a.T
    bounds = Bounds(torch.full((3,), -0.075), torch.full((3,), 0.075))
    cost = rollout_cost(model, z0, [LatentGoalCost(goal, metric="l2")])
    args = {"cem": dict(samples=400, elites=20, iterations=25, min_std=0.001),
            "icem": dict(samples=400, elites=20, iterations=25, min_std=0.001, decay=1.0),
            "mppi": dict(samples=400, iterations=30, temperature=1e-5, min_std=0.001),
            "gradient": dict(iterations=300, lr=0.003)}[name]
    result = make_solver(name, seed=0, **args).solve(cost, 1, bounds)
    assert (result.actions[0] - a_star).abs().max() < tolerance, (result.actions, a_star)


def test_optimum_on_the_bound_is_projected():
    a = torch.eye(2)
    model = LinearToy(a)
    goal = torch.tensor([[1.0, -1.0]])  # far outside: the optimum is the corner of the box
    bounds = Bounds(torch.full((2,), -0.075), torch.full((2,), 0.075))
    cost = rollout_cost(model, torch.zeros(1, 1, 2), [LatentGoalCost(goal, metric="l2")])
    for name in ("cem", "icem", "mppi", "gradient"):
        plan = make_solver(name, seed=0).solve(cost, 1, bounds).actions[0]
        torch.testing.assert_close(plan, torch.tensor([0.075, -0.075]), atol=2e-3, rtol=0)


def test_unknown_solver_and_bad_elites():
    with pytest.raises(ValueError, match="solver must be one of"):
        make_solver("random-shooting")
    with pytest.raises(ValueError, match="elites"):
        make_solver("cem", samples=4, elites=8)


def test_readout_term_adds_the_metric_distance_between_predicted_and_goal_readouts():
    from planners.mpc import MPCConfig, MPCPlanner
    from world_model.models import StateReadout

    torch.manual_seed(2)
    model = LinearToy(torch.eye(3))
    readout = StateReadout(3, [0, 1])
    with torch.no_grad():
        readout.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        readout.linear.bias.zero_()
    readout.set_normalisation(torch.tensor([0.5, -0.2]), torch.tensor([2.0, 0.5]))
    z0, goal = torch.randn(1, 1, 3), torch.randn(1, 3)
    actions = 0.05 * torch.randn(6, 2, 3)
    plain = rollout_cost(model, z0, [LatentGoalCost(goal)])(actions)
    with_readout = rollout_cost(model, z0, [LatentGoalCost(goal), ReadoutGoalCost(readout, goal, 3.0)])(actions)
    reached = model.rollout(z0.expand(6, 1, 1, 3), actions)[:, -1]
    metres = (readout(reached) - readout(goal)).norm(dim=-1)
    torch.testing.assert_close(with_readout, plain + 3.0 * metres)
    with pytest.raises(ValueError, match="state readout"):
        ReadoutGoalCost(None, goal, 1.0)
    with pytest.raises(ValueError, match="readout_weight"):
        MPCPlanner(model, make_solver("cem"), Bounds.droid(), MPCConfig(readout_weight=1.0))


def test_readout_weight_null_resolves_from_the_checkpoint():
    from planners.factory import DEFAULT_READOUT_WEIGHT, resolve_mpc
    from planners.mpc import MPCConfig
    from world_model.models import StateReadout

    model = LinearToy(torch.eye(3))
    assert resolve_mpc(model, MPCConfig(horizon=2, readout_weight=None)).readout_weight == 0.0
    model.readout = StateReadout(3, [0, 1, 2])
    assert resolve_mpc(model, MPCConfig(horizon=2, readout_weight=None)).readout_weight == DEFAULT_READOUT_WEIGHT
    assert resolve_mpc(model, MPCConfig(horizon=2, readout_weight=0.0)).readout_weight == 0.0


def test_icem_finds_a_multistep_optimum_stops_early_and_keeps_shifted_elites():
    from planners.solvers import ICEMSolver, colored_noise

    torch.manual_seed(3)
    model = LinearToy(torch.eye(3))
    z0 = torch.zeros(1, 1, 3)
    goal = torch.tensor([[0.12, -0.05, 0.1]])  # needs about two full steps: a 3-step sequence must spread it
    bounds = Bounds(torch.full((3,), -0.075), torch.full((3,), 0.075))
    cost = rollout_cost(model, z0, [LatentGoalCost(goal, metric="l2")])
    plans = {name: make_solver(name, seed=0, samples=300, elites=20, iterations=15, min_std=0.001).solve(cost, 3, bounds)
             for name in ("cem", "icem")}
    assert plans["icem"].cost <= 1e-5 and plans["cem"].cost <= 1e-5, {k: v.cost for k, v in plans.items()}
    torch.testing.assert_close(plans["icem"].actions.sum(0), goal[0], atol=5e-3, rtol=0)
    early = ICEMSolver(samples=300, elites=20, iterations=30, tolerance=0.05, seed=0).solve(cost, 3, bounds)
    assert early.iterations < 30 and len(early.history) == early.iterations
    solver = ICEMSolver(samples=64, elites=10, iterations=2, seed=0)
    solver.solve(cost, 3, bounds)
    kept = solver._kept.clone()
    solver.solve(cost, 3, bounds, init=torch.zeros(2, 3))  # the next MPC step: last plan shifted by one
    assert kept.shape == (3, 3, 3)
    noise = colored_noise((2000, 16, 1), 2.0, torch.Generator().manual_seed(0))
    lag1 = (noise[:, 1:] * noise[:, :-1]).mean()
    assert 0.5 < float(lag1) < 1.0 and abs(float(noise.std()) - 1.0) < 0.05  # smooth over time, unit variance


def _readout_toy() -> tuple[LinearToy, "torch.nn.Module"]:
    """LinearToy whose frames encode to their mean colour (z = RGB / 255, one token) and whose readout reads z0 as
    state dim 0 (metres) and z1 as state dim 5 (a yaw, radians)."""
    from world_model.models import StateReadout

    class Encoded(LinearToy):
        def encode(self, pixels):
            return (pixels.float().mean(dim=(-2, -1)) / 255.0)[:, :, None, :]

    model = Encoded(torch.eye(3))
    readout = StateReadout(3, [0, 5])
    with torch.no_grad():
        readout.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        readout.linear.bias.zero_()
    model.readout = readout
    return model, readout


def test_readout_scale_weighs_each_readout_output_in_the_cost():
    from planners.costs import readout_scale

    model, readout = _readout_toy()
    torch.testing.assert_close(readout_scale([0, 5], {5: 0.2}), torch.tensor([1.0, 0.2]))
    assert readout_scale([0, 5], None) is None and readout_scale([0, 5], {}) is None
    torch.manual_seed(3)
    z0, goal = torch.randn(1, 1, 3), torch.randn(1, 3)
    actions = 0.05 * torch.randn(5, 2, 3)
    reached = model.rollout(z0.expand(5, 1, 1, 3), actions)[:, -1]
    diff = readout(reached) - readout(goal)
    scaled = ReadoutGoalCost(readout, goal, 2.0, scale=readout_scale([0, 5], {"5": 0.2}))  # keys as config.json has them
    torch.testing.assert_close(scaled(reached[:, None], actions), 2.0 * (diff * torch.tensor([1.0, 0.2])).norm(dim=-1))
    dropped = ReadoutGoalCost(readout, goal, 2.0, scale=readout_scale([0, 5], {5: 0.0}))  # scale 0: the dim is ignored
    torch.testing.assert_close(dropped(reached[:, None], actions), 2.0 * diff[:, 0].abs())
    with pytest.raises(ValueError, match=r"state dim\(s\) \[3\].*reads \[0, 5\]"):
        readout_scale([0, 5], {3: 1.0})
    with pytest.raises(ValueError, match="needs a checkpoint with a state readout"):
        readout_scale(None, {5: 0.2})


def test_the_subgoal_switch_measures_the_readout_with_its_scale():
    import numpy as np

    from planners.mpc import MPCConfig, MPCPlanner

    model, _ = _readout_toy()
    subgoal, goal = np.full((4, 4, 3), 100, np.uint8), np.full((4, 4, 3), 250, np.uint8)
    seen = subgoal.copy()
    seen[..., 1] += 26  # the readout's yaw output 0.102 rad away from the sub-goal's, its position output the same
    for scale, switched in ((None, 0), ({5: 0.2}, 1)):  # 0.102 m > 3 cm; 0.102 rad x 0.2 m/rad = 2 cm < 3 cm
        planner = MPCPlanner(model, make_solver("cem", samples=8, elites=2, iterations=1), Bounds(-torch.ones(3), torch.ones(3)),
                             MPCConfig(readout_weight=1.0, subgoal_readout=0.03, readout_scale=scale))
        planner.reset([subgoal, goal])
        planner.act(seen)
        assert planner.goal_index == switched


def test_the_state_box_costs_how_far_the_planned_state_leaves_it():
    from planners.costs import StateBoxCost, state_box

    dims, low, high = state_box({"5": [-0.5, 0.5], 0: [0.3, 0.7]}, 7)  # keys as config.json has them
    assert dims == [0, 5]
    term = StateBoxCost(torch.tensor([0.5, 0, 0, 0, 0, 0.4, 0]), dims, low, high, weight=10.0)
    actions = torch.zeros(3, 2, 7)
    actions[1, :, 5] = 0.1  # yaw 0.5, then 0.6: 0.1 rad outside at the second step
    actions[2, 0, 0] = 0.3  # x 0.8, then 0.8: 0.1 m outside at both steps
    torch.testing.assert_close(term(None, actions), torch.tensor([0.0, 1.0, 2.0]))
    assert state_box(None, 7) is None and state_box({}, 7) is None
    with pytest.raises(ValueError, match=r"state dim\(s\) \[7\]; the model's actions change dims 0..6"):
        state_box({7: [0, 1]}, 7)
    with pytest.raises(ValueError, match=r"mpc.state_box\[5\] must be \[low, high\] with low <= high, got \[1.0, 0.0\]"):
        state_box({5: [1.0, 0.0]}, 7)


def test_a_planner_outside_its_state_box_plans_back_into_it():
    """The arm's yaw at 1.2 rad, the box [-0.5, 0.5]: the plan turns back, whatever the latent cost says."""
    import numpy as np

    from planners.mpc import MPCConfig, MPCPlanner

    model, _ = _readout_toy()
    model.a = torch.eye(3, 7)  # 7-D Franka actions; the latent moves with x, y, z
    frame, goal = np.full((4, 4, 3), 100, np.uint8), np.full((4, 4, 3), 250, np.uint8)
    state = np.array([0.5, 0.0, 0.2, np.pi, 0.0, 1.2, 0.0], np.float32)
    first_yaw = {}
    for box in (None, {5: [-0.5, 0.5]}):
        planner = MPCPlanner(model, make_solver("cem", samples=64, elites=8, iterations=3, seed=1),
                             Bounds(-0.15 * torch.ones(7), 0.15 * torch.ones(7)),
                             MPCConfig(horizon=3, final_only=False, state_box=box, state_box_weight=100.0))
        planner.reset(goal)
        first_yaw[box is None] = float(planner.act(frame, state)[0, 5])
        if box is not None:
            with pytest.raises(RuntimeError, match="needs the observed robot state"):
                planner.reset(goal)
                planner.act(frame)
    assert first_yaw[False] < -0.12  # turning back as fast as the bounds allow
    assert first_yaw[True] > -0.12  # the toy's latent cost alone does not ask for it


def test_the_action_cost_charges_each_planned_moves_size_in_half_ranges():
    from planners.costs import action_cost

    bounds = Bounds.droid(fixed={3: 0.0})  # position 0.075 m, rotation 0.15 rad per step
    term = action_cost({"0": 0.1, 5: 1.0}, bounds)  # keys as config.json has them
    actions = torch.zeros(2, 3, 7)
    actions[0, :, 0] = 0.075  # a full-range x move on each of 3 steps
    actions[1, 0, 5] = -0.075  # half the yaw range, once
    actions[:, :, 6] = 1.0  # the gripper command is not charged
    assert torch.allclose(term(None, actions), torch.tensor([0.3, 0.5]))
    assert action_cost(None, bounds) is None and action_cost({}, bounds) is None
    for bad in ({3: 0.1}, {7: 0.1}):  # held fixed; not an action dim
        with pytest.raises(ValueError, match="not free action dims"):
            action_cost(bad, bounds)


def test_a_heavy_action_cost_makes_the_planner_hold_still(tmp_path):
    from helpers import tiny_checkpoint

    from planners.factory import SolverConfig, build_planner, load_model
    from planners.mpc import MPCConfig

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt"))
    goal, frame = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 120, np.uint8)
    moves = []
    for cost in (None, {0: 1e3, 1: 1e3, 2: 1e3}):
        planner = build_planner(model, config, SolverConfig(samples=32, elites=4, iterations=3),
                                MPCConfig(horizon=2, action_cost=cost), {3: 0.0, 4: 0.0, 5: 0.0}, torch.device("cpu"), 0)
        planner.reset(goal)
        moves.append(float(planner.act(frame)[0, :3].abs().max()))
    assert moves[1] < 0.1 * moves[0]  # the plan is the mean (no move) rather than the best full-range sample


def test_the_action_change_cost_charges_each_change_from_the_action_before():
    from planners.costs import action_change_cost

    bounds = Bounds.droid(fixed={3: 0.0})  # position 0.075 m per step
    term = action_change_cost({"0": 1.0}, bounds)
    actions = torch.zeros(2, 3, 7)
    actions[0, :, 0] = torch.tensor([0.075, -0.075, 0.075])  # shaking: two full-range reversals (4 half-ranges)
    actions[1, :, 0] = 0.075  # one steady move: no change within the plan
    assert torch.allclose(term(None, actions), torch.tensor([4.0, 0.0]))
    term.previous = torch.zeros(7)  # ... but the first step is a change from the last executed action (at rest)
    assert torch.allclose(term(None, actions), torch.tensor([5.0, 1.0]))
    assert action_change_cost(None, bounds) is None
    with pytest.raises(ValueError, match="mpc.action_change: dims \\[3\\] are not free action dims"):
        action_change_cost({3: 1.0}, bounds)


def test_a_heavy_action_change_cost_makes_the_planner_repeat_its_last_action(tmp_path):
    from helpers import tiny_checkpoint

    from planners.factory import SolverConfig, build_planner, load_model
    from planners.mpc import MPCConfig

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt"))
    goal, frames = np.zeros((32, 32, 3), np.uint8), [np.full((32, 32, 3), v, np.uint8) for v in (120, 30)]
    changes = []
    for cost in (None, {0: 1e3, 1: 1e3, 2: 1e3}):
        planner = build_planner(model, config, SolverConfig(samples=32, elites=4, iterations=3),
                                MPCConfig(horizon=2, action_change=cost), {3: 0.0, 4: 0.0, 5: 0.0},
                                torch.device("cpu"), 0)
        planner.reset(goal)
        first, second = (planner.act(frame)[0, :3] for frame in frames)
        changes.append(float((second - first).abs().max()))
    assert changes[1] < 0.1 * changes[0]  # the second plan keeps the first plan's move
