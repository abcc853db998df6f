"""Gymnasium MuJoCo tasks through the goal-env adapter (envs/goal_adapter.py): scripted experts (`adapter.expert=NAME`,
each called as `expert(goal_point, rng, noise) -> action` toward the adapter's goal) and robot-pose functions for
collection (`state_fn=envs.mujoco_tasks:NAME`).

`pusher` (gymnasium's `Pusher-v5`): operational-space control of the hand. The hand (`tips_arm`, the wrist) carries
a U-shaped fork: a 0.2 m crossbar through the wrist and two 0.1 m prongs along the hand's x axis. The expert
cradles the object (radius 0.05) between the prongs against the crossbar and pushes it along the object -> goal
line: it moves above a point behind the object on that line, the fork turned to the push direction, descends to
the object's height, then pushes; where the arm cannot turn the fork that far (pushes toward -x, objects near the
arm's base) it pushes with the object in the fork's corner, against the crossbar and one prong. When the object
leaves the fork it lifts and starts over. Each step solves a few damped-least-squares IK iterations (hand position;
fork axis toward the push direction and, weakly, the fork level; inside the joint limits; warm-started, with
restarts from fixed spread-out postures when the solve misses) and tracks the solution with a joint-space PD law
scaled by the arm's inertia, torques clipped to the env's +-2. Noise: Gaussian torque noise, `noise` x the limit.

Pusher-v5's physics limit how fast any policy pushes: the object weighs 8 mg and MuJoCo's soft contact scales its
force with that mass (constraint regularisation from the body's mass, not the slide joints' armature), so the
hand-object force stays below ~0.03 N before the crossbar passes through the object, against the slide joints'
damping 0.5: the object moves at ~2 mm per 0.05 s step at most. The expert holds a steady penetration
(`PUSH_DEPTH`) instead of ramming; the env's start distances (0.17-0.4 m) take it 100-180 steps, so the Pusher
recipe gives episodes 200 steps (`max_episode_steps`), not the env's default 100.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np


class PusherExpert:
    """The `pusher` expert (module docstring); one per env, built on the env's model and data."""

    HAND = "tips_arm"  # the wrist: the crossbar's centre
    OBJECT = "object"
    ARM_DOFS = 7
    TOUCH = 0.07  # object radius 0.05 + crossbar radius 0.02: the wrist-object centre distance at contact
    PUSH_DEPTH = 0.055  # how far the crossbar is held into the soft contact while pushing (the contact force grows with it)
    BEHIND = 0.085  # descend this far behind the object (the crossbar 1.5 cm clear of it)
    HIGH_Z = -0.2  # travel height (the object's top is at -0.225, the crossbar's radius 0.02)
    PUSH_Z = -0.27  # the object's centre is at -0.275, the table at -0.325
    STEP = 0.2  # metres the IK target leads the hand by, at most
    KP, KD = 100.0, 18.0  # joint-space PD gains (1/s^2, 1/s), scaled by the arm's inertia
    CENTRED = np.radians(20)  # push with the object centred in the fork when its axis is this close to the push
    CORNER = 0.03  # ... else with the object in a corner: this far off the axis (prong at 0.1 - 0.07)
    DONE = 0.015  # stop pushing this close to the goal
    YAW, LEVEL = 0.3, 0.03  # IK weights of turning the fork to the push direction and of keeping it level (position: 1)
    RESTARTS = 8  # IK starts from fixed spread-out postures when the warm-started solve misses
    MISS = 0.02  # ... by more than this (metres, plus the orientation error in radians x 0.05)
    RESTART_EVERY = 10  # steps between such restarts, at most one

    def __init__(self, env: Any):
        base = env.unwrapped
        self.model, self.data = base.model, base.data
        self.hand = self.model.body(self.HAND).id
        self.obj = self.model.body(self.OBJECT).id
        self.low = self.model.jnt_range[: self.ARM_DOFS, 0].copy()
        self.high = self.model.jnt_range[: self.ARM_DOFS, 1].copy()
        self.torque = base.action_space.high.astype(np.float64)
        self._scratch = mujoco.MjData(self.model)
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))
        self._mass = np.zeros((self.model.nv, self.model.nv))
        self._postures = np.random.default_rng(0).uniform(self.low, self.high, (self.RESTARTS, self.ARM_DOFS))
        self._solution: np.ndarray | None = None  # the last IK solution: the next solve starts there
        self._since_restart = self.RESTART_EVERY

    def reset(self) -> None:
        """Forget the last IK solution (a new episode)."""
        self._solution = None
        self._since_restart = self.RESTART_EVERY

    def target(self, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the hand position to move toward, the push direction in the plane) for the current state."""
        obj = self.data.xpos[self.obj][:2].copy()
        hand = self.data.xpos[self.hand].copy()
        to_goal = np.asarray(goal, dtype=np.float64)[:2] - obj
        distance = float(np.linalg.norm(to_goal))
        u = to_goal / max(distance, 1e-9)
        if distance < self.DONE:
            return hand, u
        rot = self.data.xmat[self.hand].reshape(3, 3)
        x_axis = rot[:2, 0] / max(float(np.linalg.norm(rot[:2, 0])), 1e-9)  # the fork's axis, in the plane
        y_axis = np.array([-x_axis[1], x_axis[0]])
        turn = float(np.arctan2(x_axis[0] * u[1] - x_axis[1] * u[0], x_axis @ u))  # from the fork's axis to u
        # where the object sits in the fork while pushed: against the crossbar, centred, or in the corner with the
        # prong on the side that turns it toward u when the arm cannot turn the fork all the way
        side = 0.0 if abs(turn) < self.CENTRED else -np.sign(turn)
        seat = self.TOUCH * x_axis + side * self.CORNER * y_axis
        rel = obj - hand[:2]
        in_hand = np.array([rel @ x_axis, rel @ y_axis])
        low = hand[2] < self.PUSH_Z + 0.02
        cradled = low and 0.0 < in_hand[0] < self.TOUCH + 0.05 and abs(in_hand[1]) < 0.06
        if cradled:  # push: hold the crossbar PUSH_DEPTH into the object
            return np.array([*(obj - seat + self.PUSH_DEPTH * u), self.PUSH_Z]), u
        behind = obj - seat - (self.BEHIND - self.TOUCH) * u
        if np.linalg.norm(hand[:2] - behind) < 0.02 and hand[2] < self.HIGH_Z + 0.03:  # above the start of the push
            return np.array([*behind, self.PUSH_Z]), u
        if hand[2] < self.HIGH_Z - 0.03 and np.linalg.norm(hand[:2] - behind) > 0.03:  # low and not cradled: lift
            return np.array([*hand[:2], self.HIGH_Z]), u
        return np.array([*behind, self.HIGH_Z]), u

    def solve(self, position: np.ndarray, u: np.ndarray) -> np.ndarray:
        """`ik` warm-started from the last solution and from the current joints; from fixed spread-out postures too
        when both miss (the arm reaches the region near its base only in a few folded postures)."""
        q_now = self.data.qpos[: self.ARM_DOFS].copy()
        starts = [q_now] if self._solution is None else [self._solution, q_now]
        best = min((self.ik(position, u, q) for q in starts), key=lambda r: r[1])
        self._since_restart += 1
        if best[1] > self.MISS and self._since_restart >= self.RESTART_EVERY:
            self._since_restart = 0
            far = min((self.ik(position, u, q, 40) for q in self._postures), key=lambda r: r[1])
            if far[1] < best[1] - self.MISS:
                best = far
        self._solution = best[0]
        return best[0]

    def ik(self, position: np.ndarray, u: np.ndarray, q: np.ndarray, iterations: int = 20
           ) -> tuple[np.ndarray, float]:
        """Joint angles (within the limits) that put the hand at `position`, its x axis along `u`, the fork level;
        and the remaining error (metres + 0.05 x radians)."""
        m, d = self.model, self._scratch
        d.qpos[:] = self.data.qpos
        q = q.copy()
        for _ in range(iterations):
            d.qpos[: self.ARM_DOFS] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            rot = d.xmat[self.hand].reshape(3, 3)
            x, z = rot[:, 0], rot[:, 2]
            sin_yaw = x[0] * u[1] - x[1] * u[0]
            yaw = sin_yaw if x[:2] @ u > 0 else np.sign(sin_yaw) or 1.0  # turn the long way round at full rate
            level = np.cross(z, [0.0, 0.0, np.sign(z[2]) or 1.0])  # either face up: the fork is symmetric
            error = np.concatenate([position - d.xpos[self.hand], [level[0], level[1], yaw]])
            mujoco.mj_jacBody(m, d, self._jacp, self._jacr, self.hand)
            jac = np.vstack([self._jacp[:, : self.ARM_DOFS], self._jacr[:, : self.ARM_DOFS]])
            weights = np.array([1.0, 1.0, 1.0, self.LEVEL, self.LEVEL, self.YAW])
            jac = jac * weights[:, None]
            step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(6), weights * error)
            q = np.clip(q + step, self.low, self.high)
        return q, float(np.linalg.norm(error[:3]) + 0.05 * np.linalg.norm(error[3:]))

    def __call__(self, goal: np.ndarray, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
        m, d = self.model, self.data
        target, u = self.target(goal)
        hand = d.xpos[self.hand]
        move = target - hand
        target = hand + move * min(1.0, self.STEP / max(float(np.linalg.norm(move)), 1e-9))
        q, qd = d.qpos[: self.ARM_DOFS].copy(), d.qvel[: self.ARM_DOFS].copy()
        q_goal = self.solve(target, u)
        mujoco.mj_fullM(m, d, self._mass)
        inertia = self._mass[: self.ARM_DOFS, : self.ARM_DOFS]
        torque = inertia @ (self.KP * (q_goal - q) - self.KD * qd) + m.dof_damping[: self.ARM_DOFS] * qd
        if noise and rng is not None:
            torque = torque + rng.normal(0.0, noise, self.ARM_DOFS) * self.torque
        return np.clip(torque, -self.torque, self.torque).astype(np.float32)


def pusher_fingertip(env: Any, obs: Any) -> tuple[np.ndarray, float, None]:
    """Pusher-v5's robot pose for collection (`state_fn=envs.mujoco_tasks:pusher_fingertip`): its fingertip, the
    `tips_arm` frame (the fork's crossbar centre; Pusher's own observation entries 14-16) in world coordinates;
    no orientation, no gripper."""
    return np.concatenate([env.unwrapped.data.body(PusherExpert.HAND).xpos, np.zeros(3)]), 0.0, None


#: Experts by name (`adapter.expert`); a `module:Class` spec names any other. Each is built with the env and
#: called as `expert(goal_point, rng, noise)`; an expert with `reset()` is reset with the env.
EXPERTS: dict[str, Callable[[Any], Callable[..., np.ndarray]]] = {"pusher": PusherExpert}
