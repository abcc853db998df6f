import os
import subprocess
import sys
import textwrap

import pytest
import torch

from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.sigreg import sigreg

CONFIG = ACPredictorConfig(width=64, depth=3, num_heads=4, action_dim=7, state_dim=7)


def _inputs(seed=0, b=2, t=4, n=5, d=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, n, d, generator=g), torch.randn(b, t, 7, generator=g), torch.randn(b, t, 7, generator=g)


def test_fresh_predictor_ignores_actions_then_learns_to_use_them():
    torch.manual_seed(0)
    model = ACPredictor(32, CONFIG)
    z, a, s = _inputs()
    a2 = torch.randn_like(a)
    torch.testing.assert_close(model(z, a, s), model(z, a2, s), rtol=0, atol=0)
    torch.testing.assert_close(model(z, a, s), model(z, a, torch.randn_like(s)), rtol=0, atol=0)
    # a few steps on a task where the next latent depends on the action
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(10):
        z, a, s = _inputs(seed=torch.randint(0, 10**6, (1,)).item())
        target = z + a[..., :1, None].expand_as(z)
        loss = (model(z, a, s) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    z, a, s = _inputs(seed=1)
    assert (model(z, a, s) - model(z, a2, s)).abs().mean() > 1e-4


def test_frame_causality():
    torch.manual_seed(0)
    model = ACPredictor(32, CONFIG)
    for block in model.blocks:  # give the modulation non-zero weights so actions matter
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.05)
    z, a, s = _inputs(t=5)
    out = model(z, a, s)
    for t in range(1, 5):
        z2, a2, s2 = z.clone(), a.clone(), s.clone()
        z2[:, t:] += torch.randn_like(z2[:, t:])
        a2[:, t:] += 1.0
        s2[:, t:] -= 1.0
        out2 = model(z2, a2, s2)
        torch.testing.assert_close(out2[:, :t], out[:, :t], rtol=0, atol=1e-6)
        assert (out2[:, t:] - out[:, t:]).abs().max() > 1e-3


def test_predictor_rejects_bad_shapes():
    model = ACPredictor(32, CONFIG)
    z, a, s = _inputs()
    with pytest.raises(ValueError, match="actions must be"):
        model(z, a[..., :6], s)
    with pytest.raises(ValueError, match="pass states"):
        model(z, a)


def test_sigreg_is_small_for_gaussians_and_large_otherwise():
    """At B=512 the Gaussian value is the statistic's finite-sample floor (~0.5); departures are far above it.

    (iid non-Gaussian coordinates would not do: their random projections are Gaussian by the CLT.)
    """
    g = torch.Generator().manual_seed(0)
    gaussian = torch.randn(512, 4, 32, generator=g)
    collapsed = 0.01 * torch.randn(512, 4, 32, generator=g)
    shifted = torch.randn(512, 4, 32, generator=g) + 1.0
    scales = torch.cat([torch.full((16,), 2.0), torch.full((16,), 0.25)])
    anisotropic = torch.randn(512, 4, 32, generator=g) * scales
    values = {name: sigreg(x, num_projections=256).item() for name, x in
              [("gaussian", gaussian), ("collapsed", collapsed), ("shifted", shifted), ("anisotropic", anisotropic)]}
    assert values["gaussian"] < 1.0, values
    for name in ("collapsed", "shifted", "anisotropic"):
        assert values[name] > 10 * values["gaussian"], values


def test_sigreg_two_gloo_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    """Real subprocesses (torchrun, gloo): value and gradients match the single-process computation."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch, torch.distributed as dist
        from world_model.sigreg import sigreg
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        z = torch.randn(64, 3, 16, generator=torch.Generator().manual_seed(0))
        local = z[rank * 32:(rank + 1) * 32].clone().requires_grad_(True)
        value = sigreg(local, num_projections=128, seed=7)
        value.backward()
        torch.save({{"value": value.detach(), "grad": local.grad / world}}, os.path.join({str(tmp_path)!r}, f"rank{{rank}}.pt"))
        dist.destroy_process_group()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    z = torch.randn(64, 3, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    value = sigreg(z, num_projections=128, seed=7)
    value.backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r, out in enumerate(ranks):
        assert abs(out["value"].item() - value.item()) < 1e-5
        torch.testing.assert_close(out["grad"], z.grad[r * 32:(r + 1) * 32], rtol=1e-4, atol=1e-7)


def _action_dependent(config: ACPredictorConfig, embed: int = 32, seed: int = 0) -> ACPredictor:
    torch.manual_seed(seed)
    model = ACPredictor(embed, config)
    with torch.no_grad():  # AdaLN-zero starts as the identity: make the actions matter
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.3)
    return model.eval()


def _uncached_rollout(model: ACPredictor, z, a_ctx, s_ctx, actions):
    """The definition the cache must reproduce: re-run the whole sequence so far at every step."""
    k = actions.shape[0]
    z_all, a_all, s_all = z.expand(k, -1, -1, -1), a_ctx.expand(k, -1, -1), s_ctx.expand(k, -1, -1)
    out = []
    for h in range(actions.shape[1]):
        a_all = torch.cat([a_all, actions[:, h : h + 1]], 1)
        z_next = model(z_all, a_all, s_all)[:, -1:]
        out.append(z_next)
        z_all = torch.cat([z_all, z_next], 1)
        s_all = torch.cat([s_all, s_all[:, -1:] + actions[:, h : h + 1]], 1)
    return torch.cat(out, 1)


@pytest.mark.parametrize("window,tokens", [(3, 1), (3, 4), (0, 4), (1, 2)])
def test_cached_rollout_equals_the_uncached_one(window, tokens):
    """One shared context (batch 1), 6 candidates, 5 steps: long enough that the window slides past the context.

    In float64, so that the comparison tests the algebra (float32 differs by summation order only).
    """
    from world_model.models import WorldModel

    config = ACPredictorConfig(width=32, depth=3, num_heads=4, state_dim=7, window=window)
    predictor = _action_dependent(config).double()
    model = WorldModel(predictor, history=3)
    g = torch.Generator().manual_seed(1)
    z, a_ctx, s_ctx = (torch.randn(1, 3, tokens, 32, generator=g, dtype=torch.float64),
                       torch.randn(1, 2, 7, generator=g, dtype=torch.float64),
                       torch.randn(1, 3, 7, generator=g, dtype=torch.float64))
    actions = 0.3 * torch.randn(6, 5, 7, generator=g, dtype=torch.float64)
    with torch.no_grad():
        cached = model.rollout(z, actions, a_ctx, s_ctx)
        reference = _uncached_rollout(predictor, z, a_ctx, s_ctx, actions)
    assert cached.shape == (6, 5, tokens, 32)
    torch.testing.assert_close(cached, reference, rtol=1e-10, atol=1e-10)
    assert (cached[0] - cached[1]).abs().max() > 1e-3  # the candidates' actions matter


def test_window_limits_what_a_frame_sees():
    """One block, window 2: frame t sees frames t-1 and t only, so frame 0 cannot move frame 2's output."""
    predictor = _action_dependent(ACPredictorConfig(width=32, depth=1, num_heads=4, state_dim=7, window=2))
    z, a, s = _inputs(t=4)
    out = predictor(z, a, s)
    z2 = z.clone()
    z2[:, 0] += 3.0
    out2 = predictor(z2, a, s)
    torch.testing.assert_close(out2[:, 2:], out[:, 2:], rtol=0, atol=1e-6)
    assert (out2[:, 1] - out[:, 1]).abs().max() > 1e-3


def test_checkpoints_without_time_positions_load_as_absolute():
    config = ACPredictorConfig.from_checkpoint({"width": 32, "depth": 1, "num_heads": 4, "state_dim": 0})
    assert config.time_positions == "absolute" and not ACPredictor(16, config).caches
    assert ACPredictorConfig.from_checkpoint({"time_positions": "rope"}).time_positions == "rope"
    with pytest.raises(ValueError, match="time_positions must be one of"):
        ACPredictorConfig(time_positions="learned")
