"""Push-T (gym-pusht on PyPI, pymunk) with the goal-env protocol, evaluated as stable-worldmodel evaluates it.

`PushT-v0` (registered by `import envs`; needs the `pusht` extra) is gym-pusht's scene and physics — a blue disc
(the agent, kinematic, driven by gym-pusht's PD law toward a target point) pushes a grey T on a 512 × 512 px table
with the fixed green target T drawn — with the interface of stable-worldmodel's `swm/PushT-v1`, on which
LeWorldModel, DINO-WM and C-JEPA report Push-T:

- action (2,) in [-1, 1]: the PD target relative to the agent, in units of 100 px (swm's `action_scale`);
- observation: the state (7,) `agent x, y, block x, y, block angle (mod 2π), agent vx, vy` (px, rad, px/s;
  the block position is its body origin, as both packages report it); frames from `render()`
  (`image_size` × `image_size` RGB, the goal T drawn, no action marker), 10 Hz;
- goals (`goals="expert"`, the default: the anchors' protocol): each seeded reset runs the scripted expert (with
  noise `reference_noise`) from gym-pusht's random start toward the target T, as a demonstration; the start is
  a uniformly drawn step of that episode, the goal the state `goal_offset` (25) steps later (stable-worldmodel's
  `goal_offset_steps`, with starts drawn only where the episode has that many steps left). Evaluation runs
  50 steps (`eval_budget`; the checkpoint's `planning.max_steps`);
- success (`success="state"`, what swm's PushT scores and the anchors report): the agent and block positions
  within 20 px of the goal's (one Euclidean norm over the four numbers) and the block angle within π/9;
  `task_distance()` is that norm in px. `success="coverage"`: gym-pusht's own test, the block covering > 95 %
  of the goal pose's T (`task_distance()` = 1 − coverage). The episode terminates at success, as in both.
- `goals="task"`: gym-pusht's own task (random start, goal = the fixed target T, coverage success) — the
  data-collection episodes, demonstrations toward the target as the anchors' Push-T data are;
- `reset(options={"state": s, "goal_state": g})` starts from and aims at recorded states (5 or 7 numbers; the
  agent velocity is 0 when absent); `set_state(s)` / `get_state()` restore and read a state exactly (angle
  first, then position, as swm does; no physics step);
- `expert_action(rng, noise)`: a scripted pusher (`PushTExpert`) toward the goal pose, then (state success) to
  the goal's agent position; Gaussian `noise` in action units.

`agent_pose` is collect's `state_fn` for it: the agent's position in arena units (512 px = 1) as the pose.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from common.errors import UserError

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on stdout when imported
try:
    import cv2
    import shapely.geometry as sg
    from gym_pusht.envs.pusht import PushTEnv as _GymPushT
except ImportError as _err:  # one line, not a traceback: cem_goal, evaluate and collect import this lazily
    raise UserError(f"PushT-v0 needs the gym-pusht package ({_err}); install it with pip install -e \".[pusht]\"") from None

ARENA = 512.0
ACTION_SCALE = 100.0  # one action unit: the PD target this many px from the agent (swm's PushT action_scale)
TARGET_POSE = np.array([256.0, 256.0, np.pi / 4])  # gym-pusht's fixed target T (body origin x, y, angle)
AGENT_RADIUS = 15.0
STATE_POSITION_PX = 20.0  # swm PushT eval_state: |agent, block positions - goal's| < 20 px ...
STATE_ANGLE = np.pi / 9  # ... and block angle within pi / 9
COVERAGE = 0.95  # gym-pusht: success when the block covers > 95 % of the goal T
GOALS = ("expert", "task")
SUCCESS = ("state", "coverage")

# The T in its body frame (gym-pusht's add_tee, scale 30): the bar (-60..60, 0..30), the stem (-15..15, 30..120).
COG = np.array([0.0, 45.0])  # its centre of gravity (gym-pusht sets it), about which it turns
MASS, MOMENT = 1.0, 3000.0  # pymunk's mass and moment of the block
GYRATION = float(np.sqrt(MOMENT / MASS))  # px per rad when translation and rotation errors are compared


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _contact_candidates(spacing: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Points on the T's faces the agent disc can push without touching another face (body frame), and the
    faces' outward normals: (K, 2), (K, 2)."""
    r = AGENT_RADIUS + 5.0  # keep the disc off the neighbouring face (the inner corners under the bar)
    faces = [  # (start, end, outward normal): each face's reachable stretch
        ((-58, 0), (58, 0), (0, -1)), ((60, 2), (60, 28), (1, 0)), ((-60, 2), (-60, 28), (-1, 0)),
        ((15 + r, 30), (58, 30), (0, 1)), ((-58, 30), (-15 - r, 30), (0, 1)),
        ((15, 30 + r), (15, 118), (1, 0)), ((-15, 30 + r), (-15, 118), (-1, 0)), ((-13, 120), (13, 120), (0, 1)),
    ]
    points, normals = [], []
    for start, end, normal in faces:
        start, end = np.asarray(start, float), np.asarray(end, float)
        n = max(2, int(np.linalg.norm(end - start) // spacing) + 1)
        for t in np.linspace(0.0, 1.0, n):
            points.append(start + t * (end - start))
            normals.append(normal)
    return np.asarray(points, float), np.asarray(normals, float)


CANDIDATES = _contact_candidates()


class PushTExpert:
    """A scripted pusher: picks the face point whose push (frictionless contact, quasi-static block) turns and
    moves the T most nearly along its pose error, goes around the T to just behind that point, pushes, and picks
    again as the error changes (keeping its point while it stays nearly as good). With `agent_goal` it then
    takes the agent there. Returns normalised actions (relative PD targets / 100 px)."""

    def __init__(self, position_tolerance: float = 1.0, angle_tolerance: float = 0.01, gain: float = 0.8,
                 travel_cost: float = 0.1):
        self.position_tolerance, self.angle_tolerance, self.gain = position_tolerance, angle_tolerance, gain
        self.travel_cost = travel_cost
        self.reset()

    def reset(self) -> None:
        self.contact: int | None = None
        self.pushing = False
        self.steps_on_contact = 0
        self.best_error = np.inf
        self.orbit = 0.0  # the way round the T once chosen (+1 / -1), kept until the way is clear
        self.banned = np.zeros(len(CANDIDATES[0]), dtype=int)  # steps a point stays out of the choice

    def __call__(self, agent: np.ndarray, block: np.ndarray, target: np.ndarray,
                 agent_goal: np.ndarray | None = None) -> np.ndarray:
        rot = _rotation(block[2])
        cog = block[:2] + rot @ COG
        error = np.concatenate([target[:2] + _rotation(target[2]) @ COG - cog, [GYRATION * _wrap(target[2] - block[2])]])
        outline = _outline(block)
        keepout = outline.buffer(AGENT_RADIUS + 3.0)
        if (np.linalg.norm(error[:2]) < self.position_tolerance
                and abs(error[2]) < self.angle_tolerance * GYRATION):
            self.contact, self.pushing = None, False
            goal = agent if agent_goal is None else np.asarray(agent_goal, float)
            return self._toward(agent, self._route(agent, goal, keepout, cog) if agent_goal is not None else goal)
        points = block[:2] + CANDIDATES[0] @ rot.T
        normals = CANDIDATES[1] @ rot.T
        arm = points - cog
        torque = arm[:, 0] * -normals[:, 1] - arm[:, 1] * -normals[:, 0]
        twist = np.concatenate([-normals, (torque / GYRATION)[:, None]], axis=1)
        align = twist @ error / (np.linalg.norm(twist, axis=1) * np.linalg.norm(error) + 1e-9)
        ready = points + normals * (AGENT_RADIUS + 8.0)  # where the disc waits before pushing
        inside = np.all((ready > AGENT_RADIUS + 6) & (ready < ARENA - AGENT_RADIUS - 6), axis=1)
        reach = float(np.linalg.norm(agent - cog))  # travel to each point: around the T, then in
        turn = np.abs(np.angle(np.exp(1j * (np.arctan2(*(ready - cog).T[::-1]) - np.arctan2(*(agent - cog)[::-1])))))
        travel = max(reach, 90.0) * turn + np.abs(np.linalg.norm(ready - cog, axis=1) - reach)
        align = align - self.travel_cost * travel / 100.0
        align = np.where(inside & (self.banned == 0), align, -np.inf)
        self.banned = np.maximum(self.banned - 1, 0)
        best = int(np.argmax(align))
        if self.contact is not None:
            current = align[self.contact]
            stalled = self.steps_on_contact > 20 and np.linalg.norm(error) > 0.97 * self.best_error
            if stalled:  # unreachable, or pushing without effect (against a wall): leave it and its neighbours
                self.banned[max(0, self.contact - 3): self.contact + 4] = 30
            if current < 0.25 or current < align[best] - 0.35 or stalled:
                self.contact, self.pushing = None, False
                best = int(np.argmax(np.where(self.banned == 0, align, -np.inf)))
        if self.contact is None:
            self.contact, self.steps_on_contact, self.best_error, self.orbit = best, 0, np.inf, 0.0
        self.steps_on_contact += 1
        self.best_error = min(self.best_error, float(np.linalg.norm(error)))
        k = self.contact
        touch = points[k] + normals[k] * AGENT_RADIUS
        if not self.pushing:
            if np.linalg.norm(agent - ready[k]) < 6.0:
                self.pushing = True
            else:
                return self._toward(agent, self._route(agent, ready[k], keepout, cog))
        if np.linalg.norm(agent - touch) > 2.5 * AGENT_RADIUS:  # lost the face: go back behind it
            self.pushing = False
            return self._toward(agent, self._route(agent, ready[k], keepout, cog))
        depth = float(np.clip(self.gain * np.linalg.norm(error) * max(align[k], 0.2), 1.0, 40.0))
        return self._toward(agent, touch - normals[k] * depth)

    @staticmethod
    def _toward(agent: np.ndarray, target: np.ndarray) -> np.ndarray:
        action = (np.asarray(target, float) - agent) / ACTION_SCALE
        peak = np.max(np.abs(action))
        return action / peak if peak > 1.0 else action

    def _route(self, agent: np.ndarray, goal: np.ndarray, keepout: Any, cog: np.ndarray) -> np.ndarray:
        """The next waypoint from `agent` to `goal` around the T (`keepout`: the T grown by the disc's radius);
        a goal within `keepout` (the disc touching the T there) is entered from just outside it."""
        entry = goal
        if keepout.contains(sg.Point(goal)):
            boundary = keepout.exterior
            nearest = np.asarray(boundary.interpolate(boundary.project(sg.Point(goal))).coords[0])
            out = nearest - goal
            entry = nearest + out / (np.linalg.norm(out) + 1e-9) * 4.0
            if np.linalg.norm(agent - entry) < 8.0 or np.linalg.norm(agent - goal) < np.linalg.norm(entry - goal) + 2.0:
                return goal
        if np.allclose(agent, entry) or not sg.LineString([agent, entry]).intersects(keepout):
            self.orbit = 0.0
            return entry
        here = sg.Point(agent)
        if keepout.contains(here):  # touching the T: step straight away from it first
            boundary = keepout.exterior
            nearest = np.asarray(boundary.interpolate(boundary.project(here)).coords[0])
            away = agent - cog if np.allclose(nearest, agent) else nearest - agent
            return agent + away / (np.linalg.norm(away) + 1e-9) * 30.0
        radius = max(float(np.linalg.norm(agent - cog)), 105.0)
        start = np.arctan2(*(agent - cog)[::-1])
        turn = _wrap(np.arctan2(*(entry - cog)[::-1]) - start)
        if not self.orbit:  # the shorter way round, unless its first step leaves the table
            sign = float(np.sign(turn) or 1.0)
            ahead = cog + radius * np.array([np.cos(start + 0.7 * sign), np.sin(start + 0.7 * sign)])
            self.orbit = sign if np.all((ahead > AGENT_RADIUS) & (ahead < ARENA - AGENT_RADIUS)) else -sign
        span = abs(turn) if np.sign(turn) == self.orbit else 2 * np.pi - abs(turn)
        step = start + self.orbit * min(span, 0.7)
        return np.clip(cog + radius * np.array([np.cos(step), np.sin(step)]), AGENT_RADIUS, ARENA - AGENT_RADIUS)


def _outline(pose: np.ndarray) -> Any:
    """The T at `pose` (body origin x, y, angle) as one shapely polygon."""
    rot = _rotation(pose[2])
    local = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], float)
    return sg.Polygon(pose[:2] + local @ rot.T)


def coverage(pose: np.ndarray, goal_pose: np.ndarray) -> float:
    """The share of the goal T (pose: body origin x, y, angle) that a T at `pose` covers (gym-pusht's measure)."""
    goal = _outline(goal_pose)
    return float(goal.intersection(_outline(pose)).area / goal.area)


class PushTEnv(_GymPushT):
    """gym-pusht's Push-T with relative actions, state observations, seeded goals and the goal-env protocol."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, image_size: int = 64, goals: str = "expert", goal_offset: int = 25, success: str | None = None,
                 reference_noise: float = 0.1, reference_steps: int = 300, render_mode: str | None = "rgb_array"):
        if goals not in GOALS:
            raise UserError(f"PushT-v0: goals must be one of {', '.join(GOALS)}, got {goals!r}")
        success = success or ("state" if goals == "expert" else "coverage")
        if success not in SUCCESS:
            raise UserError(f"PushT-v0: success must be one of {', '.join(SUCCESS)}, got {success!r}")
        if render_mode not in (None, "rgb_array"):
            raise UserError(f"PushT-v0 renders rgb_array frames only, got render_mode={render_mode!r}")
        if int(image_size) < 8 or int(goal_offset) < 1 or int(reference_steps) <= int(goal_offset):
            raise UserError(f"PushT-v0: need image_size >= 8, goal_offset >= 1 and reference_steps > goal_offset, got "
                            f"{image_size}, {goal_offset}, {reference_steps}")
        super().__init__(obs_type="state", render_mode="rgb_array", observation_width=int(image_size),
                         observation_height=int(image_size))
        self.image_size, self.goals, self.success = int(image_size), goals, success
        self.distance_unit = "px" if success == "state" else "1 - coverage"  # of task_distance(), for plots and logs
        self.goal_offset, self.reference_noise, self.reference_steps = int(goal_offset), reference_noise, int(reference_steps)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (7,), np.float64)
        self.goal_state: np.ndarray | None = None
        self._goal_image: np.ndarray | None = None
        self._expert = PushTExpert(*((1.0, 0.01, 0.8, 0.1) if success == "coverage" else (6.0, 0.15, 0.8, 0.0)))

    # -- state ----------------------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """(7,): agent x, y, block x, y, block angle mod 2π, agent vx, vy (swm's PushT `state`)."""
        a, b, v = self.agent.position, self.block.position, self.agent.velocity
        return np.array([a.x, a.y, b.x, b.y, self.block.angle % (2 * np.pi), v.x, v.y], dtype=np.float64)

    def set_state(self, state: np.ndarray) -> None:
        """Place agent and block exactly at a recorded state (5 or 7 numbers); the block at rest."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.shape not in ((5,), (7,)) or not np.all(np.isfinite(state)):
            raise ValueError(f"PushT-v0: a state is 5 or 7 finite numbers (agent x, y, block x, y, angle[, agent "
                             f"vx, vy]), got shape {state.shape}")
        self.agent.position = (state[0], state[1])
        self.agent.velocity = (state[5], state[6]) if len(state) == 7 else (0.0, 0.0)
        self.block.angle = state[4]  # the angle first: it turns the body about its centre of gravity
        self.block.position = (state[2], state[3])
        self.block.velocity, self.block.angular_velocity = (0.0, 0.0), 0.0
        for body in (self.agent, self.block):  # the shapes' world geometry (drawing, contacts) follows now
            self.space.reindex_shapes_for_body(body)

    def block_pose(self) -> np.ndarray:
        return np.array([self.block.position.x, self.block.position.y, self.block.angle], dtype=np.float64)

    # -- gymnasium ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        gym.Env.reset(self, seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"state", "goal_state"})
        if unknown:
            raise ValueError(f"PushT-v0: unknown reset options {unknown}; it takes state and goal_state")
        self._setup()
        self._last_action = None
        if "state" in options:
            start = np.asarray(options["state"], dtype=np.float64)
            goal = options.get("goal_state")
            goal = self._task_goal(start) if goal is None else np.asarray(goal, dtype=np.float64)
        elif self.goals == "task":
            start = self._random_start()
            goal = self._task_goal(start)
        else:
            start, goal = self._reference_goal()
            self._setup()  # a fresh space: no contact cached from the demonstration warm-starts the first steps
        self.set_state(goal)
        self.goal_state = self.get_state()
        self._goal_image = self.render()
        self.set_state(start)
        self._expert.reset()
        distance = self.task_distance()
        return self.get_state(), {"is_success": self.is_success(distance), "distance": distance,
                                  "goal_state": self.goal_state.copy()}

    def _random_start(self) -> np.ndarray:
        """gym-pusht's start distribution: agent in 50..450 px, block in 100..400 px, any angle."""
        rng = self.np_random
        return np.array([rng.integers(50, 450), rng.integers(50, 450), rng.integers(100, 400), rng.integers(100, 400),
                         rng.uniform(-np.pi, np.pi) % (2 * np.pi), 0.0, 0.0], dtype=np.float64)

    @staticmethod
    def _task_goal(start: np.ndarray) -> np.ndarray:
        """gym-pusht's goal: the block on the fixed target T (the agent where it starts)."""
        return np.array([start[0], start[1], *TARGET_POSE, 0.0, 0.0], dtype=np.float64)

    def _reference_goal(self) -> tuple[np.ndarray, np.ndarray]:
        """The anchors' goal: a demonstration (the expert with noise toward the target T, from a random start,
        until gym-pusht's success or `reference_steps`); the start is a uniformly drawn step with `goal_offset`
        steps after it, the goal the state those steps later. Leaves the env at the start."""
        rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        for _ in range(100):
            self.set_state(self._random_start())
            states = self._demonstration(rng)
            if len(states) > self.goal_offset:
                step = int(rng.integers(0, len(states) - self.goal_offset))
                return states[step], states[step + self.goal_offset]
        raise RuntimeError("PushT-v0: no demonstration longer than goal_offset in 100 tries")

    def _demonstration(self, rng: np.random.Generator) -> list[np.ndarray]:
        expert, target = PushTExpert(), TARGET_POSE
        states = [self.get_state()]
        for _ in range(self.reference_steps):
            action = expert(np.array(self.agent.position), self.block_pose(), target)
            self._simulate(np.clip(action + self.reference_noise * rng.normal(size=2), -1.0, 1.0))
            states.append(self.get_state())
            if coverage(self.block_pose(), target) > COVERAGE:
                break
        return states

    def _simulate(self, action: np.ndarray) -> None:
        """One control step (0.1 s): gym-pusht's PD law toward the agent + 100 px * action, 10 physics steps."""
        target = np.clip(np.array(self.agent.position) + ACTION_SCALE * action, 0.0, ARENA)
        self.n_contact_points = 0
        for _ in range(int(1 / (self.dt * self.control_hz))):
            self.agent.velocity += (self.k_p * (target - np.array(self.agent.position))
                                    - self.k_v * np.array(self.agent.velocity)) * self.dt
            self.space.step(self.dt)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.goal_state is None:
            raise RuntimeError("PushT-v0: step() before reset()")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"PushT-v0: an action is 2 finite numbers in [-1, 1] (the PD target relative to the "
                             f"agent, in 100 px), got {action.tolist() if action.size <= 8 else action.shape}")
        action = np.clip(action, -1.0, 1.0)
        self._last_action = action
        self._simulate(action)
        distance = self.task_distance()
        success = self.is_success(distance)
        cover = coverage(self.block_pose(), self.goal_state[2:5])
        touching = _outline(self.block_pose()).distance(sg.Point(*self.agent.position)) <= AGENT_RADIUS + 0.5
        info = {"is_success": success, "distance": distance, "coverage": cover, "n_contacts": self.n_contact_points,
                "touching": bool(touching), "goal_state": self.goal_state.copy()}
        return self.get_state(), float(np.clip(cover / COVERAGE, 0.0, 1.0)), success, False, info

    def render(self) -> np.ndarray:
        """The scene as observed: `image_size` square RGB (the target T drawn, no action marker)."""
        return self._render(visualize=False)

    def _draw(self) -> Any:
        """gym-pusht's drawing (the target T, then the scene) with the shapes in a fixed order — walls, T, agent —
        instead of pymunk's spatial-index order, which depends on the space's history: a restored state draws the
        frame the live one drew, pixel for pixel, where the disc overlaps the T."""
        import pygame
        import pymunk
        import pymunk.pygame_util
        from gym_pusht.envs.pymunk_override import DrawOptions

        screen = pygame.Surface((512, 512))
        screen.fill((255, 255, 255))
        options = DrawOptions(screen)
        goal_body = self.get_goal_pose_body(self.goal_pose)
        for shape in self.block.shapes:
            points = [pymunk.pygame_util.to_pygame(goal_body.local_to_world(v), options.surface)
                      for v in shape.get_vertices()]
            pygame.draw.polygon(screen, pygame.Color("LightGreen"), [*points, points[0]])
        walls = sorted(self.space.static_body.shapes, key=lambda s: (tuple(s.a), tuple(s.b)))
        for shape in [*walls, *self._block_shapes, *self.agent.shapes]:  # what pymunk's debug_draw passes
            fill, outline, world = options.color_for_shape(shape), options.shape_outline_color, shape.body.local_to_world
            if isinstance(shape, pymunk.Circle):
                options.draw_circle(world(shape.offset), shape.body.angle, shape.radius, outline, fill)
            elif isinstance(shape, pymunk.Segment):
                options.draw_fat_segment(world(shape.a), world(shape.b), shape.radius, outline, fill)
            else:
                options.draw_polygon([world(v) for v in shape.get_vertices()], shape.radius, outline, fill)
        return screen

    def _get_img(self, screen: Any, width: int, height: int, render_action: bool = False) -> np.ndarray:
        import pygame

        img = np.transpose(np.array(pygame.surfarray.pixels3d(screen)), axes=(1, 0, 2))
        return np.ascontiguousarray(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))

    # -- the goal-env protocol ------------------------------------------------------------------------------
    def goal_image(self) -> np.ndarray:
        if self._goal_image is None:
            raise RuntimeError("PushT-v0: goal_image() before reset()")
        return self._goal_image

    def task_distance(self) -> float:
        """State success: |agent, block positions - the goal's| in px; coverage success: 1 - coverage."""
        if self.goal_state is None:
            raise RuntimeError("PushT-v0: task_distance() before reset()")
        if self.success == "coverage":
            return 1.0 - coverage(self.block_pose(), self.goal_state[2:5])
        return float(np.linalg.norm(self.get_state()[:4] - self.goal_state[:4]))

    def is_success(self, distance: float) -> bool:
        if self.success == "coverage":
            return bool(distance < 1.0 - COVERAGE)
        turn = abs(_wrap(self.block.angle - self.goal_state[4]))
        return bool(distance < STATE_POSITION_PX and turn < STATE_ANGLE)

    def expert_action(self, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
        """The scripted pusher toward the goal pose (then, for state success, to the goal's agent position)."""
        if self.goal_state is None:
            raise RuntimeError("PushT-v0: expert_action() before reset()")
        agent_goal = self.goal_state[:2] if self.success == "state" else None
        action = self._expert(np.array(self.agent.position), self.block_pose(), self.goal_state[2:5], agent_goal)
        if noise and rng is not None:
            action = action + noise * rng.normal(size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def agent_pose(env: Any, obs: Any) -> tuple[np.ndarray, float, None]:
    """collect's `state_fn` for PushT-v0: the agent's position in arena units (512 px = 1) as the robot pose."""
    x, y = env.agent.position
    return np.array([x / ARENA, y / ARENA, 0.0, 0.0, 0.0, 0.0]), 0.0, None
