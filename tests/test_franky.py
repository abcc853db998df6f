"""FrankyRobot against franky-sim: real franky-control, a real libfranka-protocol simulator, real sockets.

franky-sim (a MuJoCo FR3 speaking libfranka's network protocol) runs in a subprocess on 127.0.0.1, fixed ports
1337/1338; it takes one client at a time, so every test closes its robot before the next connects. A hang
inside franky's C++ ignores signals, hence pytest-timeout's thread method. Images come from
`envs.robot.scene_camera`: our envs' MuJoCo scene rendered at the measured joints (franky-sim in a
subprocess exposes no view of its own scene).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import franky  # noqa: F401 - the `robot` extra; a missing install is a failure, not a skip
import h5py
import imageio.v2 as imageio
import mujoco
import numpy as np
import pytest

from common.droid import CARTESIAN_KEY, GRIPPER_KEY, IMAGE_KEY, JOINTS_KEY, TIMESTAMP_KEY
from common.rotations import apply_delta_pose, euler_xyz_to_matrix, matrix_to_euler_xyz, rotation_vector
from envs.franka_model import (
    ARM_JOINTS,
    FR3_JOINT_LIMITS,
    HOME_QPOS,
    TCP_SITE,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    scene_xml,
)
from envs.robot import FrankyRobot, scene_camera
from envs.safety import SafetyStop

pytestmark = pytest.mark.timeout(180, method="thread")

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PORTS = (1337, 1338)
READY = "Connect to the server using"
PERIOD = 1.0 / 15.0


def _port_taken(port: int) -> bool:
    """Whether something listens on HOST:port (found by binding, never by connecting: a connection would be
    franky-sim's one client)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


@pytest.fixture(scope="module")
def franky_sim():
    taken = [p for p in PORTS if _port_taken(p)]
    if taken:
        pytest.skip(f"franky-sim needs TCP ports {PORTS} on {HOST}, and {taken} are taken "
                    "(another franky-sim or libfranka server is running)")
    # `franky-sim -s mujoco --hostname 127.0.0.1`, with SIGINT's handler installed even where the test runner was
    # started with SIGINT ignored (a background job), so SIGINT stops it
    # (and SIGTERM to it when this process dies: a hang in franky's C++ ends in pytest-timeout's os._exit, which
    # runs no teardown, and a leftover franky-sim would hold the ports)
    cmd = [sys.executable, "-c", "import ctypes, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
           "signal.signal(signal.SIGINT, signal.default_int_handler); "
           "from franky_sim.run_server import main; sys.argv[0] = 'franky-sim'; main()",
           "-s", "mujoco", "--hostname", HOST]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if READY in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    start = time.monotonic()
    while not ready.wait(0.1):
        if proc.poll() is not None or time.monotonic() - start > 60:
            proc.kill()
            pytest.fail("franky-sim did not start:\n" + "".join(lines[-30:]))
    # one fast move home first (the sim starts elsewhere), so the tests' resets at the default dynamics are short
    warm = FrankyRobot(HOST, scene_camera, realtime=False, dynamics_factor=0.5)
    warm.reset()
    warm.close()
    del warm
    gc.collect()
    yield proc
    for stop, wait in ((proc.send_signal, 10), (lambda _: proc.kill(), 10)):  # SIGINT stops it in ~2 s
        stop(signal.SIGINT)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def robot(franky_sim):
    r = FrankyRobot(HOST, scene_camera, realtime=False)
    yield r
    r.close()  # drops the connections, so the next test (or run_robot.py) can connect
    del r
    gc.collect()


def tcp_position(q) -> np.ndarray:
    """The TCP position at joints q in our envs' MuJoCo model."""
    model = mujoco.MjModel.from_xml_string(scene_xml())
    data = mujoco.MjData(model)
    for joint, value in zip(ARM_JOINTS, q):
        data.joint(joint).qpos = value
    mujoco.mj_kinematics(model, data)
    return data.site(TCP_SITE).xpos.copy()


def pose_error(robot: FrankyRobot) -> tuple[float, float]:
    """(m, rad) between the commanded target and the measured pose."""
    obs = robot.observe()
    position, rotation = robot.commanded_pose()
    measured = euler_xyz_to_matrix(obs[CARTESIAN_KEY][3:])
    return (float(np.linalg.norm(obs[CARTESIAN_KEY][:3] - position)),
            float(np.linalg.norm(rotation_vector(rotation @ measured.T))))


def test_realtime_is_enforced_by_default_and_the_error_says_what_to_do(franky_sim):
    try:
        robot = FrankyRobot(HOST, scene_camera)  # franky.RealtimeConfig.Enforce
    except RuntimeError as err:  # a kernel without real-time support (CI, most desktops)
        assert "realtime capabilities" in str(err) and "realtime=False" in str(err)
    else:  # pragma: no cover - a real-time kernel connects
        robot.close()
    gc.collect()


def test_observe_act_reset_close(robot):
    obs = robot.reset()
    assert obs[IMAGE_KEY].shape == (64, 64, 3) and obs[IMAGE_KEY].dtype == np.uint8
    assert obs[CARTESIAN_KEY].shape == (6,) and obs[GRIPPER_KEY].shape == (1,) and obs[JOINTS_KEY].shape == (7,)
    assert abs(obs[TIMESTAMP_KEY] - time.monotonic()) < 0.5
    np.testing.assert_allclose(obs[JOINTS_KEY], HOME_QPOS, atol=2e-3)
    # the envs' TCP convention: at home the TCP is where our model puts it, gripper-down reads (0, 0, 0) (no roll
    # at +-pi), and the fully open gripper reads 0
    np.testing.assert_allclose(obs[CARTESIAN_KEY][:3], tcp_position(HOME_QPOS), atol=1e-3)
    np.testing.assert_allclose(obs[CARTESIAN_KEY][3:], 0.0, atol=2e-3)
    assert obs[GRIPPER_KEY][0] == pytest.approx(0.0, abs=0.01)
    sent = robot.act([0.05, 0.0, -0.05, 0.0, 0.0, 0.1, 1.0])
    assert sent.dtype == np.float32 and sent[6] == 1.0
    moved = robot.reset()  # right after act, while the arm and the gripper still move
    np.testing.assert_allclose(moved[JOINTS_KEY], HOME_QPOS, atol=2e-3)
    assert moved[GRIPPER_KEY][0] == pytest.approx(0.0, abs=0.01)
    image = robot.observe()[IMAGE_KEY]
    robot.act([0.0, 0.075, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert robot.settle()
    assert np.abs(robot.observe()[IMAGE_KEY].astype(int) - image).mean() > 0.5  # the rendered arm moved
    robot.close()
    robot.close()  # idempotent


def test_single_steps_reach_their_commanded_pose_within_1mm(robot):
    robot.reset()
    steps = [(0.03, -0.04, -0.05, 0, 0, 0), (0, 0, 0, 0.1, 0, 0), (0, 0, 0, -0.15, 0, 0), (0, 0.03, 0, 0, 0.1, 0.15),
             (0.02, 0.02, 0.02, 0.05, -0.05, 0.05)]
    errors, rpy = [], []
    previous = None
    start = robot.observe()[CARTESIAN_KEY]
    for delta in steps:
        robot.observe()
        robot.act([*delta, 0.0])
        position, rotation = robot.commanded_pose()
        if previous is not None:  # the target integrates the commands: previous target composed with the delta
            expected = apply_delta_pose(*previous, np.array(delta))
            np.testing.assert_allclose(position, expected[0], atol=1e-9)
            np.testing.assert_allclose(rotation, expected[1], atol=1e-9)
        assert robot.settle(10.0)
        errors.append(pose_error(robot))
        rpy.append(robot.observe()[CARTESIAN_KEY][3:])
        np.testing.assert_allclose(rpy[-1], matrix_to_euler_xyz(rotation), atol=2e-3)  # the state the planner sees
        if previous is None:  # the first target starts from the measured pose
            np.testing.assert_allclose(position, start[:3] + delta[:3], atol=1e-6)
        previous = (position, rotation)
    print("single-step errors (mm, mrad):", [(round(e * 1e3, 3), round(r * 1e3, 3)) for e, r in errors])
    assert max(e for e, _ in errors) < 1e-3 and max(r for _, r in errors) < 2e-3
    # rolls of +0.1 then -0.15 about gripper-down read 0.1 and -0.05: no jump across +-pi
    np.testing.assert_allclose([rpy[1][0], rpy[2][0]], [0.1, -0.05], atol=2e-3)


def test_twenty_streamed_steps_land_within_5mm(franky_sim):
    # dynamics 0.2: 15 cm/s is within the default 0.1's limits too (60 mm lag at the last step on a quiet machine),
    # but franky-sim falls behind real time on a loaded machine and the lag then passes the re-sync bound
    robot = FrankyRobot(HOST, scene_camera, realtime=False, dynamics_factor=0.2)
    try:
        _stream_twenty_steps(robot)
    finally:
        robot.close()


def _stream_twenty_steps(robot: FrankyRobot) -> None:
    start = robot.reset()[CARTESIAN_KEY]
    resyncs = robot.resyncs
    heights, act_s = [], []
    tick = time.monotonic()
    for _ in range(20):
        obs = robot.observe()
        heights.append(obs[CARTESIAN_KEY][2])
        t = time.perf_counter()
        robot.act([0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0])
        act_s.append(time.perf_counter() - t)
        tick += PERIOD
        time.sleep(max(0.0, tick - time.monotonic()))
    lag, _ = pose_error(robot)
    assert robot.settle(10.0)
    final = robot.observe()[CARTESIAN_KEY]
    error, _ = pose_error(robot)
    print(f"20 x 1 cm at 15 Hz: moved {np.linalg.norm(final[:3] - start[:3]) * 1e3:.2f} mm, lag at the last step "
          f"{lag * 1e3:.1f} mm, settled error {error * 1e3:.3f} mm, z range {np.ptp(heights) * 1e3:.2f} mm, "
          f"act max {max(act_s) * 1e3:.2f} ms")
    assert robot.resyncs == resyncs + 1  # only the first act after reset syncs the target to the arm
    np.testing.assert_allclose(final[:3], start[:3] + [0.0, 0.2, 0.0], atol=5e-3)
    assert error < 5e-3 and np.ptp(heights) < 5e-3


def test_act_never_blocks_even_when_the_gripper_target_changes(robot):
    robot.reset()
    act_s, gripper = [], []
    tick = time.monotonic()
    for k in range(45):
        obs = robot.observe()
        gripper.append(obs[GRIPPER_KEY][0])
        target = float((k // 4) % 2)  # a new gripper target every 4 steps (0.27 s), while the fingers still move
        dy = 0.01 if (k // 5) % 2 == 0 else -0.01
        t = time.perf_counter()
        robot.act([0.0, dy, 0.0, 0.0, 0.0, 0.0, target])
        act_s.append(time.perf_counter() - t)
        tick += PERIOD
        time.sleep(max(0.0, tick - time.monotonic()))
    ms = np.array(act_s) * 1e3
    print(f"act() at 15 Hz with gripper changes: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} "
          f"ms, max {ms.max():.2f} ms; {robot.gripper_worker.sent} gripper moves sent")
    assert np.percentile(ms, 99) <= 10.0
    assert max(gripper) > 0.3  # the gripper did follow
    assert robot.gripper_worker.error is None


def test_recovers_after_a_safety_stop(robot):
    robot.reset()
    robot.act([0.0, 0.05, 0.0, 0.0, 0.0, 0.0, 1.0])
    time.sleep(0.1)  # the arm and the gripper are moving
    with pytest.raises(SafetyStop, match="non-finite action"):
        robot.act([np.nan] * 7)
    stopped = robot.observe()[CARTESIAN_KEY][:3]
    time.sleep(0.3)
    assert np.linalg.norm(robot.observe()[CARTESIAN_KEY][:3] - stopped) < 2e-3  # it stopped, and stays
    robot.act([0.0, 0.0, -0.03, 0.0, 0.0, 0.0, 0.0])  # the next act runs, from where the arm stopped
    assert robot.settle(10.0)
    error, _ = pose_error(robot)
    np.testing.assert_allclose(robot.commanded_pose()[0], stopped + [0.0, 0.0, -0.03], atol=2e-3)
    assert error < 1e-3
    # a joint near its limit stops too (the guard behind the reachable box); then close() right after the stop
    robot.act([0.0, 0.03, 0.0, 0.0, 0.0, 0.0, 0.0])
    robot.safety.limits.joint_limits = ((-0.01, 0.01), *FR3_JOINT_LIMITS[1:])
    with pytest.raises(SafetyStop, match="joint 1 at"):
        robot.act([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    robot.close()


def test_the_workspace_box_is_reachable_gripper_down(robot):
    """franky-sim's FR3 reaches the safety box's corners (the y = +0.3 face and the near low corner; the arm is
    symmetric in y) gripper-down, with every joint inside its limits."""
    robot.reset()
    robot.robot.relative_dynamics_factor = franky.RelativeDynamicsFactor(0.5)
    (x0, _, z0), (x1, y1, z1) = WORKSPACE_LOW, WORKSPACE_HIGH
    low, high = np.array(FR3_JOINT_LIMITS).T
    for corner in [(x1, y1, z1), (x1, y1, z0), (x0, y1, z0), (x0, y1, z1), (x0, 0.0, z0)]:
        robot.move_to(corner)
        obs = robot.observe()
        assert np.linalg.norm(obs[CARTESIAN_KEY][:3] - corner) < 1e-3, (corner, obs[CARTESIAN_KEY])
        assert np.linalg.norm(obs[CARTESIAN_KEY][3:]) < 2e-3
        assert np.all((obs[JOINTS_KEY] > low + 0.05) & (obs[JOINTS_KEY] < high - 0.05)), (corner, obs[JOINTS_KEY])
    with pytest.raises(SafetyStop, match="outside the workspace box"):
        robot.move_to((0.8, 0.0, 0.6))


@pytest.mark.slow
def test_run_robot_episode_on_franky_sim_through_the_planning_server(franky_sim, tmp_path):
    """`python planners/run_robot.py robot=franky ...` with the shipped model served over loopback: a Droid-style
    episode that the validator accepts, and the arm moves toward the goal."""
    from planners.serve import spawn

    goal_q = np.array(HOME_QPOS) + [0.35, 0.25, 0.0, 0.2, 0.0, -0.05, 0.0]
    goal_png = tmp_path / "goal.png"
    imageio.imwrite(goal_png, scene_camera(goal_q))
    out = tmp_path / "episodes" / "franky_000.h5"
    # the shipped model with a lighter CEM (100 samples x 3 iterations) and 2-action chunks, to keep the test short
    server, port = spawn(ROOT / "checkpoints" / "reach_default", "device=cpu", "solver.samples=100",
                         "solver.iterations=3", "mpc.execute=2")
    try:
        run = subprocess.run(
            [sys.executable, str(ROOT / "planners" / "run_robot.py"), "robot=franky", f"franky.host={HOST}",
             "franky.realtime=false", "franky.camera=envs.robot:scene_camera", "franky.dynamics_factor=0.3",
             f"goal_image={goal_png}",
             f"server=ws://127.0.0.1:{port}", "max_steps=20", f"record={out}"],
            cwd=ROOT, capture_output=True, text=True, timeout=150)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    print("franky-sim episode:", summary)
    assert summary["steps"] == 20 and summary["stop_reason"] == "max_steps" and summary["recorded"] == str(out)
    check = subprocess.run([sys.executable, "-m", "datasets.validate", str(out.parent), "progress=false"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    goal = tcp_position(goal_q)
    with h5py.File(out) as f:
        assert f.attrs["robot_type"] == "franka_franky" and f["observation/image/exterior_1_left"].shape == (20, 64, 64, 3)
        cartesian = f["observation/robot_state/cartesian_position"][:]
        assert f["observation/robot_state/joint_positions"].shape == (20, 7)
    distance = np.linalg.norm(cartesian[:, :3] - goal, axis=1)
    print("distance to the goal TCP per step (m):", np.round(distance, 3))
    # the planner's actions, sent through franky, moved the arm toward the goal. Judged by the closest approach, not
    # the last step: with the test's light CEM (100 x 3) and plans slower than the 15 Hz period on 2 cores (10 of 20
    # steps overrun), what the arm does after getting close depends on timing: 5 runs on this machine came within
    # 0.022-0.087 m of the goal from 0.183 m, and ended at 0.022-0.140 m (CI once ended at 0.147 m)
    assert distance.min() < distance[0] - 0.06, distance



def test_bench_franky_prints_one_json_line(franky_sim):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_franky.py"), f"host={HOST}", "dynamics_factor=0.3", "single_steps=2",
         "stream_steps=3", "loop_steps=8"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["single_step_error_mm_max"] < 1.0 and figures["act_p99_ms"] < 10.0
    assert abs(figures["stream_moved_mm"] - 30.0) < 5.0 and figures["loop_steps"] == 8
