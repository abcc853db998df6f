"""The DROID conventions, in one place: state and action layout, per-step limits, wire keys, camera names.

State (7,): end-effector xyz (m) + extrinsic xyz Euler angles (rad, scipy's "xyz") in the robot base
frame, then the gripper (0 open .. 1 closed). Action (7,): Δxyz, Δroll-pitch-yaw applied on the left in
the base frame (R_next = R(Δ) @ R), and the gripper (an absolute target on robots and in our envs, a
change in the V-JEPA 2-AC delta-pose actions models are trained on). DROID bounds a control step at
0.075 m and 0.15 rad per axis at 15 Hz.
"""

from __future__ import annotations

STATE_DIM = 7  # cartesian_position (6) + gripper_position (1)
ACTION_DIM = 7  # Δxyz (3) + Δrpy (3) + gripper (1)
STATE_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
GRIPPER_DIM = 6  # index of the gripper in states and actions
ROTATION_DIMS = (3, 4, 5)

CONTROL_HZ = 15.0
MAX_DELTA_POS = 0.075  # m per control step, each axis
MAX_DELTA_ROT = 0.15  # rad per control step, each axis

#: Camera names of the episode files (DROID's raw trajectory.h5 names).
EXTERIOR_CAMERA = "exterior_1_left"
WRIST_CAMERA = "wrist_left"

#: The action keys our envs and robots record (`action/<name>` in the episode file).
CARTESIAN_DELTA_ACTION = "cartesian_delta"
GRIPPER_ACTION = "gripper_position"
FRANKA_ACTION_KEYS = (CARTESIAN_DELTA_ACTION, GRIPPER_ACTION)

#: Observation keys on the wire and in the robot interface (openpi's DROID example).
IMAGE_KEY = "observation/exterior_image_1_left"
CARTESIAN_KEY = "observation/cartesian_position"
GRIPPER_KEY = "observation/gripper_position"
JOINTS_KEY = "observation/joint_position"
TIMESTAMP_KEY = "timestamp"  # time.monotonic() when the observation was taken
GOAL_KEY = "goal/exterior_image_1_left"
RESET_KEY = "reset"  # optional request flag: true starts a new episode


def wire_image_key(camera: str, prefix: str = "observation") -> str:
    """A camera's image key on the wire, in openpi's DROID naming: `exterior_1_left` -> `observation/exterior_image_1_left`
    (= IMAGE_KEY), `wrist_left` -> `observation/wrist_image_left`; `prefix="goal"` gives its goal key (GOAL_KEY)."""
    head, _, rest = camera.partition("_")
    return f"{prefix}/{head}_image_{rest}" if rest else f"{prefix}/{camera}_image"
