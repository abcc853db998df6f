"""The planning server over real loopback sockets: protocol, concurrency, bad requests, health, openpi client."""

import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import pytest
from helpers import tiny_checkpoint

from common.droid import CARTESIAN_KEY, GOAL_KEY, GRIPPER_KEY, IMAGE_KEY
from planners.client import PlanningClient, ServerError
from planners.protocol import packb, unpackb
from planners.serve import spawn

ROOT = Path(__file__).resolve().parents[1]
MAX_MESSAGE_BYTES = 400_000  # the module's server: well above any request below, small enough to send past quickly


def robot_run_config(overrides):
    from hydra import compose

    from common.config import build_config
    from planners.run_robot import RobotRunConfig

    return build_config(RobotRunConfig, compose("run_robot", overrides=overrides))


def start_server(checkpoint: Path, *overrides: str) -> tuple[subprocess.Popen, int]:
    return spawn(checkpoint, "device=cpu", "solver.samples=16", "solver.elites=4", "solver.iterations=2", *overrides)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    proc, port = start_server(checkpoint, "mpc.horizon=3", "mpc.execute=2", f"max_message_bytes={MAX_MESSAGE_BYTES}")
    yield port
    stop_server(proc)
    assert proc.returncode == 0


def observation(seed: int = 0, size: int = 48) -> dict:
    rng = np.random.default_rng(seed)
    return {IMAGE_KEY: rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            CARTESIAN_KEY: np.array([0.5, 0.0, 0.3, 0.0, 0.0, 0.0]), GRIPPER_KEY: np.array([0.2])}


def goal(seed: int = 100, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_wire_format_round_trips_arrays_and_scalars():
    message = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.float32(2.5), "c": [1, "x"],
               "d": np.zeros((0, 7), np.uint8)}
    out = unpackb(packb(message))
    assert out["a"].dtype == np.float32 and np.array_equal(out["a"], message["a"])
    assert out["b"] == 2.5 and isinstance(out["b"], np.float32) and out["c"] == [1, "x"] and out["d"].shape == (0, 7)


def test_metadata_on_connect_and_action_chunks(server):
    with PlanningClient(f"ws://127.0.0.1:{server}") as client:
        meta = client.metadata
        assert meta["action_horizon"] == 2 and meta["control_hz"] == 15.0 and meta["model"] == "lewm"
        assert meta["cost"] == {"metric": "l1", "readout_weight": 0.0}  # the tiny checkpoint has no state readout
        assert meta["action_space"]["dim"] == 7 and meta["goal_key"] == GOAL_KEY
        reply = client.infer({**observation(), GOAL_KEY: goal()})
        actions = reply["actions"]
        assert actions.shape == (2, 7) and actions.dtype == np.float32
        assert np.all(np.abs(actions[:, :3]) <= 0.075 + 1e-6) and np.all(actions[:, 3:6] == 0)
        assert np.all((actions[:, 6] >= 0) & (actions[:, 6] <= 1))  # absolute gripper target
        timing = reply["server_timing"]
        assert 0 < timing["infer_ms"] <= timing["server_ms"]
        second = client.infer(observation(1))
        assert second["actions"].shape == (2, 7) and "prev_total_ms" in second["server_timing"]


def test_goal_is_kept_until_replaced_and_goals_are_per_connection(server):
    uri = f"ws://127.0.0.1:{server}"

    def episode(client, goal_seed, results, key):
        client.infer({GOAL_KEY: goal(goal_seed)})
        results[key] = np.stack([client.infer(observation(7 + i))["actions"] for i in range(4)])

    concurrent: dict = {}
    with PlanningClient(uri) as a, PlanningClient(uri) as b:
        threads = [threading.Thread(target=episode, args=(c, g, concurrent, g)) for c, g in ((a, 1), (b, 2))]
        [t.start() for t in threads]
        [t.join(timeout=120) for t in threads]
    alone: dict = {}
    for g in (1, 2):  # each goal again, in a fresh connection with no other client around
        with PlanningClient(uri) as c:
            episode(c, g, alone, g)
    # a reply depends on its own connection's goal and history only, never on the other client's
    assert np.array_equal(concurrent[1], alone[1]) and np.array_equal(concurrent[2], alone[2])
    assert not np.array_equal(alone[1], alone[2])  # and the goal matters
    with PlanningClient(uri) as c:
        with pytest.raises(ServerError, match="no goal image yet"):
            c.infer(observation())
        c.infer({GOAL_KEY: goal(1)})
        replaced = c.infer({GOAL_KEY: goal(2), **observation(7)})  # replacing the goal starts over with goal 2
        assert replaced["goal_set"] and np.array_equal(replaced["actions"], alone[2][0])


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server):
    cases = [
        ({GOAL_KEY: goal(), CARTESIAN_KEY: np.zeros(6), GRIPPER_KEY: np.zeros(1)}, f"missing key '{IMAGE_KEY}'"),
        ({GOAL_KEY: goal(), **observation(), CARTESIAN_KEY: np.zeros(5)}, "expected shape (6,)"),
        ({GOAL_KEY: goal(), **observation(), IMAGE_KEY: np.zeros((48, 48, 3), np.float32)}, "expected dtype uint8"),
        ({GOAL_KEY: goal(), **observation(), IMAGE_KEY: np.zeros((48, 48), np.uint8)}, "expected shape (H, W, 3)"),
        ({GOAL_KEY: goal(), **observation(), CARTESIAN_KEY: np.array([np.nan, 0, 0, 0, 0, 0])}, "non-finite"),
        ({GOAL_KEY: goal(), **observation(), GRIPPER_KEY: np.array([np.inf])}, "non-finite"),
        ({GOAL_KEY: np.zeros((2000, 10, 3), np.uint8)}, "outside 1..1024 pixels"),
        ({GOAL_KEY: goal(), **observation(), IMAGE_KEY: "not an image"}, "expected a uint8 numpy array"),
        ([1, 2, 3], "must be a dict"),
        ({}, "empty request"),
    ]
    with PlanningClient(f"ws://127.0.0.1:{server}") as client:
        for request, expected in cases:
            with pytest.raises(ServerError) as err:
                client.infer(request)
            assert expected in str(err.value), (expected, str(err.value))
        garbage = client.send_raw(b"\xc1\xff\x00garbage")
        assert isinstance(garbage, str) and "not msgpack" in garbage
        lying = msgpack.packb({"x": {b"__ndarray__": True, b"data": b"abc", b"dtype": "<f4", b"shape": [10]}})
        assert "does not match its 3 bytes" in client.send_raw(lying)
        assert "binary msgpack" in client.send_raw("text frame")
        # an oversized message gets a reply naming the limit, not close code 1009
        oversized = client.send_raw(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        assert oversized == (f"bad request: message of {MAX_MESSAGE_BYTES + 1} bytes exceeds max_message_bytes="
                             f"{MAX_MESSAGE_BYTES}")
        # an ndarray with a dtype numpy does not know, and a byte msgpack never uses, are named as such
        bad_dtype = msgpack.packb({"x": {b"__ndarray__": True, b"data": b"abcd", b"dtype": "<zz", b"shape": [1]}})
        assert client.send_raw(bad_dtype) == "bad request: array dtype '<zz' is not a numpy dtype"
        assert client.send_raw(b"\xc1") == "bad request: request is not msgpack: byte 0xc1 at offset 0 is never used"
        nested = client.send_raw(msgpack.packb({"a": 1, "b": 2})[:-1] + b"\xc1")
        assert nested == "bad request: request is not msgpack: byte 0xc1 at offset 6 is never used"
        assert client.send_raw(msgpack.packb([1, 2])[:-1]) == "bad request: request is not msgpack: it ends early (2 bytes)"
        assert client.send_raw(msgpack.packb(1) + b"\x01") == ("bad request: request is not msgpack: 1 byte of extra "
                                                                "data after the message")
        # the same connection still plans
        assert client.infer({**observation(), GOAL_KEY: goal()})["actions"].shape == (2, 7)
    with PlanningClient(f"ws://127.0.0.1:{server}") as other:  # and new clients are served
        assert other.infer({**observation(), GOAL_KEY: goal()})["actions"].shape == (2, 7)


def test_health_endpoint_answers_while_a_plan_runs(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    proc, port = start_server(checkpoint, "solver.samples=4000", "solver.iterations=30", "mpc.horizon=5")
    try:
        with PlanningClient(f"ws://127.0.0.1:{port}", timeout=300) as client:
            client.infer({GOAL_KEY: goal()})
            done = threading.Event()
            plan_s = {}

            def slow_plan():
                start = time.perf_counter()
                client.infer(observation())
                plan_s["s"] = time.perf_counter() - start
                done.set()

            threading.Thread(target=slow_plan, daemon=True).start()
            time.sleep(0.3)
            start = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
                assert response.status == 200 and response.read() == b"OK\n"
            health_s = time.perf_counter() - start
            assert not done.is_set(), "the plan finished before the health check; make it slower"
            assert done.wait(300)
            assert health_s < plan_s["s"] / 2
    finally:
        stop_server(proc)


def test_openpi_client_works_unmodified(server):
    policy_module = pytest.importorskip("openpi_client.websocket_client_policy")
    policy = policy_module.WebsocketClientPolicy(host="127.0.0.1", port=server)
    assert policy.get_server_metadata()["action_horizon"] == 2
    actions = policy.infer({**observation(), GOAL_KEY: goal()})["actions"]
    assert actions.shape == (2, 7)
    with pytest.raises(RuntimeError, match="Error in inference server:\nbad request: .*non-finite"):
        policy.infer({**observation(), CARTESIAN_KEY: np.full(6, np.nan)})
    assert policy.infer(observation(3))["actions"].shape == (2, 7)  # same connection, goal kept


def test_run_robot_records_a_droid_episode_through_the_server(server, tmp_path):
    from hydra import initialize_config_dir

    from common.cli import CONFIG_DIR
    from datasets.validate import check_episode
    from planners.run_robot import run

    out = tmp_path / "episode.h5"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = robot_run_config(overrides=[f"server=ws://127.0.0.1:{server}", "max_steps=5", f"record={out}",
                                              "env_kwargs={image_size: 32}", "control_hz=50"])
    summary = run(cfg)
    assert summary["steps"] == 5 and summary["stop_reason"] in ("max_steps", "success")
    assert summary["recorded"] == str(out) and check_episode(out) == 5
    import h5py

    with h5py.File(out) as f:
        assert f["observation/image/exterior_1_left"].shape == (5, 32, 32, 3)
        assert f["action/cartesian_delta"].shape == (5, 6) and f.attrs["stop_reason"] == summary["stop_reason"]
        assert np.all(np.abs(f["action/cartesian_delta"][:, :3]) <= 0.075 + 1e-6)


def test_run_robot_stops_on_a_lost_server_and_keeps_what_it_recorded(tmp_path):
    from hydra import initialize_config_dir

    from common.cli import CONFIG_DIR
    from planners.run_robot import run

    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    proc, port = start_server(checkpoint)
    out = tmp_path / "episode.h5"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = robot_run_config(overrides=[f"server=ws://127.0.0.1:{port}", "max_steps=200", f"record={out}",
                                              "env_kwargs={image_size: 32}", "request_timeout_s=5",
                                              "stop_on_success=false"])  # plans are fast: run until the server dies
    threading.Timer(3.0, proc.kill).start()  # the server dies mid-episode
    summary = run(cfg)
    proc.wait()
    assert summary["steps"] < 200 and "Connection" in summary["stop_reason"]
    assert out.exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_sim_robot_reaches_goals_through_the_server_with_the_shipped_model(tmp_path):
    """The shipped default model, served over loopback, drives the sim robot to held-out goals."""
    from hydra import initialize_config_dir

    from common.cli import CONFIG_DIR
    from common.seeding import evaluation_seed
    from planners.run_robot import run

    proc, port = spawn(ROOT / "checkpoints" / "reach_default", "device=cpu")
    try:
        results = []
        for episode in range(3):
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
                cfg = robot_run_config(overrides=[f"server=ws://127.0.0.1:{port}", "max_steps=30",
                                                      f"seed={evaluation_seed(0, episode)}", "record=null",
                                                      "control_hz=1000"])
            results.append(run(cfg))
    finally:
        stop_server(proc)
    assert sum(r["success"] for r in results) >= 2, results
    assert all(r["final_distance"] < 0.05 for r in results if r["success"])


def test_stacked_goal_images_are_sub_goals_then_the_goal(server):
    with PlanningClient(f"ws://127.0.0.1:{server}") as c:
        stacked = np.stack([goal(1), goal(2), goal(3)])  # two sub-goals, then the goal
        first = c.infer({GOAL_KEY: stacked, **observation(7)})
        assert first["goal_set"] and first["goal_index"] == 0
        # serve.yaml: mpc.subgoal_steps=20 control steps per sub-goal; this server executes 2 actions per request
        indices = [c.infer(observation(8 + i))["goal_index"] for i in range(10)]
        assert indices == [0] * 9 + [1]
        with pytest.raises(ServerError, match=r"expected 1\.\.16 stacked goal images"):
            c.infer({GOAL_KEY: np.zeros((17, 8, 8, 3), np.uint8)})
        with pytest.raises(ServerError, match=r"goal/exterior_image_1_left\[0\]: expected dtype uint8"):
            c.infer({GOAL_KEY: np.zeros((2, 8, 8, 3), np.float32)})


def test_a_frameskip_model_sends_the_control_steps_each_plan_stands_for(tmp_path):
    """A model trained on every 3rd frame plans once per 3 control steps: the reply is those 3 steps (its delta
    pose split evenly), and the metadata says so."""
    checkpoint = tiny_checkpoint(tmp_path / "skip3", data={"frameskip": 3})
    proc, port = start_server(checkpoint, "mpc.horizon=2", "mpc.execute=1")
    try:
        with PlanningClient(f"ws://127.0.0.1:{port}") as client:
            assert client.metadata["frameskip"] == 3 and client.metadata["action_horizon"] == 3
            actions = client.infer({**observation(), GOAL_KEY: goal()})["actions"]
    finally:
        stop_server(proc)
    assert actions.shape == (3, 7)
    np.testing.assert_allclose(actions[1:, :6], actions[:1, :6].repeat(2, 0), atol=1e-6)  # equal steps
    assert np.abs(actions[:, :3]).max() <= 0.075 + 1e-6 and np.abs(actions[:, :3]).max() > 1e-4  # per-step limits
