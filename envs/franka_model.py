"""MJCF of a Franka Panda on a table, with simplified geometry that renders fast on a CPU.

Kinematics and joint limits are the real Panda's (Franka's DH parameters, as in
MuJoCo Menagerie's `franka_emika_panda`: d1 = 0.333, d3 = 0.316, a4 = 0.0825,
a5 = -0.0825, d5 = 0.384, a7 = 0.088, flange 0.107, TCP 0.1034 beyond it).
Links are capsules between joint origins instead of meshes: software (EGL/Mesa)
rendering of the full meshes is slow, and at 64x64 pixels capsules read the same.
Shadows are off for the same reason (they cost ~17 ms per frame, the scene 0.3 ms).

The TCP frame is Franka's end-effector frame (flange, hand turned -45 degrees about z,
0.1034 m out: what libfranka/franky report as the end-effector pose with the Franka
Hand) turned 180 degrees about x (`TCP_IN_EE`), so that the usual gripper-pointing-down
pose reads as Euler angles (0, 0, 0) instead of sitting on the +-pi wrap-around of roll
(which makes state vectors jump). Real robots apply the same fixed rotation (envs/robot.py).
"""

from __future__ import annotations

from common.droid import CONTROL_HZ, EXTERIOR_CAMERA, WRIST_CAMERA

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_joint1", "finger_joint2")
JOINT_LIMITS = (
    (-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
    (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973),
)
#: Franka Research 3 joint limits (rad; what franky-control's libfranka drives and franky-sim models).
FR3_JOINT_LIMITS = (
    (-2.7437, 2.7437), (-1.7837, 1.7837), (-2.9007, 2.9007), (-3.0421, -0.1518),
    (-2.8065, 2.8065), (0.5445, 4.5169), (-3.0159, 3.0159),
)
HOME_QPOS = (0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785398)  # TCP at (0.463, 0, 0.403), gripper down; inside FR3's limits
FINGER_OPEN = 0.04
#: The finger position servos' gains (kp N/m, kv N s/m). The reach and push models were trained with the stiff
#: pair; FIRM_GRIP holds a cube: with 800/40 the fingers pressed 5-10 mm into the (soft-contact) cube and the
#: pressing oscillated (gripper reading 0.35 <-> 0.55 every ~3 control steps while holding), and the scripted
#: expert lost a lifted cube 34 times in 40 noisy pick-and-place episodes; with 200/20, 5 times, reading steady
#: (README, "The grip that held").
FINGER_SERVO = (800.0, 40.0)
FIRM_GRIP = (200.0, 20.0)
#: The box the robots' safety layer keeps the end effector in (m, base frame).
#: Every pose in it is reachable gripper-down (yaw 0 and +-45 degrees) with every joint 0.1 rad inside FR3's
#: limits: IK on this scene's kinematics over a 5 cm grid with the faces, 1680 poses; tests/test_franky.py drives
#: franky-sim's FR3 to its corners. The former box (ENV_TARGET_LOW/HIGH) held poses 0.22 m from anything the arm
#: can do gripper-down (e.g. (0.8, 0, 0.6)), and x = 0.3 near the base fails at low heights.
WORKSPACE_LOW = (0.35, -0.3, 0.015)
WORKSPACE_HIGH = (0.65, 0.3, 0.45)
#: The envs' own bound on their IK targets, unchanged: the envs' start poses reach z = 0.55 m (22 % of resets lie
#: outside the safety box), and the shipped models' data was collected with it. A SimRobot still gets the safety box.
ENV_TARGET_LOW = (0.25, -0.4, 0.015)
ENV_TARGET_HIGH = (0.8, 0.4, 0.6)
TCP_SITE = "tcp"
#: The TCP frame in Franka's end-effector frame: 180 degrees about x, as a (w, x, y, z) quaternion (MJCF order).
TCP_IN_EE_WXYZ = (0.0, 1.0, 0.0, 0.0)
SUBSTEPS = 16  # physics steps per control step: timestep = 1 / (15 * 16) s

#: Exterior camera placements (position, look-at target, vertical field of view in degrees), base frame.
#: "wide": like DROID's left exterior camera, front-left about a metre away, the whole reachable workspace in view
#: (the reach task; a 5 cm cube is 2-3 pixels wide at 64 px). "table": closer and narrower, framed on the table
#: region where objects are pushed, grasped and placed, so gripper, object and goal region fill the image
#: (the V-JEPA 2 maintainers' advice for real robots); the cube is ~4 px at 64 px, ~9 px at 128 px. "reach": the
#: wide camera's place with a narrower lens aimed at the reach task's goal box (FrankaReachEnv.GOAL_LOW/HIGH, the hand
#: at its top corners still in view): ~1.4 x the pixels per centimetre at the same image size, for the 2 cm reach.
CAMERA_VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    "wide": ((1.25, 0.7, 0.85), (0.45, 0.0, 0.2), 55.0),
    "table": ((1.0, 0.6, 0.7), (0.5, 0.0, 0.1), 45.0),
    "reach": ((1.25, 0.7, 0.85), (0.5, 0.0, 0.27), 40.0),
}
FLOOR_Z = -0.75  # the floor under the table: catches a cube that leaves the table (the cube only)
PLATFORM_HALF = (0.05, 0.05, 0.03)  # the raised placing platform of the pick-and-place task (top at 0.06 m)


def _look_at(pos: tuple[float, float, float], target: tuple[float, float, float]) -> str:
    """MJCF `xyaxes` of a camera at `pos` looking at `target` with the world z axis up."""
    import numpy as np

    forward = np.subtract(target, pos)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return " ".join(f"{v:.5f}" for v in (*right, *up))


def scene_xml(cube: bool = False, goal_marker: bool = False, wrist_camera: bool = False, platform: bool = False,
              camera_view: str = "wide", wide_fingers: bool = False,
              finger_servo: tuple[float, float] = FINGER_SERVO) -> str:
    """The scene: table, Panda with gripper, exterior camera; optionally a cube, a goal patch, a placing platform
    (a static mocap box), a wrist camera, and 4 cm wide finger pads (2 cm otherwise): with 2 cm pads a grasped
    cube slips out when carried at DROID speeds (75 % of scripted pick-and-place episodes succeed, 100 % with
    4 cm pads); the reach and push tasks keep the narrow fingers the shipped reach model was trained on.
    `finger_servo` is the fingers' (kp, kv)."""
    if camera_view not in CAMERA_VIEWS:
        raise ValueError(f"camera_view must be one of {sorted(CAMERA_VIEWS)}, got {camera_view!r}")
    cam_pos, cam_target, cam_fovy = CAMERA_VIEWS[camera_view]
    pad = 0.02 if wide_fingers else 0.01  # finger half-width along the pad
    links = [
        # (body, parent-frame pos, quat, joint, capsule fromto in the body frame, radius)
        ("link1", "0 0 0.333", "1 0 0 0", "joint1", "0 0 -0.15 0 0 0", 0.06),
        ("link2", "0 0 0", "1 -1 0 0", "joint2", "0 0 0 0 -0.316 0", 0.06),
        ("link3", "0 -0.316 0", "1 1 0 0", "joint3", "0 0 0 0.0825 0 0", 0.055),
        ("link4", "0.0825 0 0", "1 1 0 0", "joint4", "0 0 0 -0.0825 0.384 0", 0.055),
        ("link5", "-0.0825 0.384 0", "1 -1 0 0", "joint5", "0 0 -0.1 0 0 0", 0.05),
        ("link6", "0 0 0", "1 1 0 0", "joint6", "0 0 0 0.088 0 0", 0.045),
        ("link7", "0.088 0 0", "1 1 0 0", "joint7", "0 0 0 0 0 0.107", 0.04),
    ]
    limits = dict(zip(ARM_JOINTS, JOINT_LIMITS))
    shades = ["0.92 0.92 0.92 1", "0.25 0.25 0.28 1"]
    body = ""
    closing = ""
    for i, (name, pos, quat, joint, fromto, radius) in enumerate(links):
        lo, hi = limits[joint]
        body += (
            f'<body name="{name}" pos="{pos}" quat="{quat}" gravcomp="1">'
            f'<joint name="{joint}" range="{lo} {hi}"/>'
            f'<geom class="arm" type="capsule" fromto="{fromto}" size="{radius}" rgba="{shades[i % 2]}"/>'
        )
        closing += "</body>"
    wrist = (f'<camera name="{WRIST_CAMERA}" pos="0.06 0 0.02" xyaxes="0 1 0 1 0 0" fovy="75"/>'
             if wrist_camera else "")
    tcp_quat = " ".join(map(str, TCP_IN_EE_WXYZ))
    hand = (
        '<body name="hand" pos="0 0 0.107" quat="0.9238795 0 0 -0.3826834" gravcomp="1">'
        '<geom class="arm" type="box" size="0.025 0.1 0.03" pos="0 0 0.03" rgba="0.92 0.92 0.92 1"/>'
        f'<site name="{TCP_SITE}" pos="0 0 0.1034" quat="{tcp_quat}" size="0.01" '
        f'rgba="1 0 0 0"/>{wrist}'
        '<body name="left_finger" pos="0 0 0.0584" gravcomp="1">'
        '<joint name="finger_joint1" class="finger"/>'
        f'<geom class="finger" type="box" size="{pad} 0.01 0.025" pos="0 0.01 0.025"/></body>'
        '<body name="right_finger" pos="0 0 0.0584" quat="0 0 0 1" gravcomp="1">'
        '<joint name="finger_joint2" class="finger"/>'
        f'<geom class="finger" type="box" size="{pad} 0.01 0.025" pos="0 0.01 0.025"/></body>'
        "</body>"
    )
    objects = ""
    if cube:
        objects += (
            '<body name="cube" pos="0.5 0 0.025"><freejoint name="cube"/>'
            '<geom name="cube" type="box" size="0.025 0.025 0.025" rgba="0.85 0.2 0.15 1" mass="0.1" '
            'contype="1" conaffinity="7" friction="0.9 0.005 0.0001" condim="4" solref="0.01 1" '
            'solimp="0.95 0.99 0.001"/></body>'
        )
    if platform:  # parked below the floor until a task places it
        objects += ('<body name="platform" mocap="true" pos="0 0 -2">'
                    f'<geom name="platform" type="box" size="{" ".join(map(str, PLATFORM_HALF))}" '
                    'rgba="0.35 0.45 0.75 1" contype="1" conaffinity="3" friction="0.8 0.005 0.0001"/></body>')
    if goal_marker:
        objects += ('<body name="goal" mocap="true" pos="0.6 0 0.0005">'
                    '<geom type="cylinder" size="0.05 0.0005" rgba="0.2 0.75 0.3 1" contype="0" conaffinity="0"/></body>')
    actuators = "".join(
        f'<position name="act_{j}" joint="{j}" kp="2500" kv="120" ctrlrange="{lo} {hi}"/>'
        for j, (lo, hi) in zip(ARM_JOINTS, JOINT_LIMITS)
    ) + "".join(f'<position name="act_{j}" joint="{j}" kp="{finger_servo[0]}" kv="{finger_servo[1]}" '
                f'ctrlrange="0 {FINGER_OPEN}"/>' for j in FINGER_JOINTS)
    return f"""
<mujoco model="franka_panda_table">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{1.0 / (CONTROL_HZ * SUBSTEPS):.8f}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <quality shadowsize="0"/>
    <global offwidth="512" offheight="512"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default>
    <joint damping="1" armature="0.1"/>
    <default class="arm"><geom contype="2" conaffinity="1" density="400"/></default>
    <default class="finger">
      <joint type="slide" axis="0 1 0" range="0 {FINGER_OPEN}" damping="5" armature="0.01"/>
      <geom contype="2" conaffinity="1" density="400" rgba="0.25 0.25 0.28 1" friction="1 0.005 0.0001"
            solref="0.01 1" solimp="0.95 0.99 0.001"/>
    </default>
  </default>
  <worldbody>
    <light pos="0.4 -0.3 1.6" dir="0 0.2 -1" castshadow="false" diffuse="0.6 0.6 0.6"/>
    <geom name="table" type="box" size="0.7 0.7 0.02" pos="0.4 0 -0.02" rgba="0.55 0.42 0.3 1"
          contype="1" conaffinity="3"/>
    <!-- the floor stops a cube that leaves the table (collision bit 4: the cube only; fingers squeezing a cube
         edge-on can flick it off the table, and without a floor it fell for ever) -->
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 {FLOOR_Z}" rgba="0.3 0.32 0.36 1" contype="4" conaffinity="0"/>
    <geom name="wall" type="box" size="0.02 1.5 0.8" pos="-0.45 0 0.2" rgba="0.75 0.78 0.82 1" contype="0" conaffinity="0"/>
    <camera name="{EXTERIOR_CAMERA}" pos="{' '.join(map(str, cam_pos))}"
            xyaxes="{_look_at(cam_pos, cam_target)}" fovy="{cam_fovy}"/>
    <body name="link0">
      <geom class="arm" type="cylinder" size="0.07 0.09" pos="0 0 0.09" rgba="0.92 0.92 0.92 1"/>
      {body}{hand}{closing}
    </body>
    {objects}
  </worldbody>
  <actuator>{actuators}</actuator>
</mujoco>
"""
