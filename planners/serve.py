"""Serve the goal-image planner over websockets: `python planners/serve.py checkpoint=PATH port=8000`.

Wire-compatible with openpi's policy protocol (see `planners.protocol`): `openpi_client`'s
`WebsocketClientPolicy` works unmodified. Each connection has its own planner state (goal image,
observed history, warm start), so concurrent clients never see each other's goals. Requests are
validated on the event loop; plans run one at a time on a worker thread, so the health endpoint
(`GET /healthz`) and error replies stay responsive while a plan is running. A bad request gets a
text reply naming the problem and the connection (and the server) keeps serving.

A model of several camera views (`data.cameras` in its config.json, e.g. exterior and wrist) takes one image per
camera in every observation (`observation/exterior_image_1_left`, `observation/wrist_image_left`) and goal
(`goal/exterior_image_1_left`, `goal/wrist_image_left`; stacked sub-goals: the same count per camera); the
metadata lists the keys. A one-view model ignores other cameras' observation images (openpi's DROID client sends
the wrist image too) but refuses goal images of other cameras in one line.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("serve")

import asyncio
import http
import logging
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from common.cli import command_line_keys
from common.device import pick_device
from common.droid import (
    ACTION_DIM,
    ACTION_NAMES,
    CARTESIAN_DELTA_ACTION,
    CARTESIAN_KEY,
    CONTROL_HZ,
    EXTERIOR_CAMERA,
    GOAL_KEY,
    GRIPPER_DIM,
    GRIPPER_KEY,
    IMAGE_KEY,
    RESET_KEY,
    wire_image_key,
)
from common.goal_env import default_view
from common.seeding import derive_seed
from datasets.transforms import resize_uint8
from planners.actions import ActionRate, delta_gripper_to_target
from planners.factory import (
    PlanConfig,
    build_planner,
    load_model,
    model_bounds,
    plan_settings,
    resolve_mpc,
    set_threads,
)
from planners.protocol import (
    OBSERVATION_KEYS,
    Observation,
    RequestError,
    check_goals,
    packb,
    parse_observation,
    unpackb,
)

log = logging.getLogger("planners.serve")


@dataclass
class ServeConfig(PlanConfig):
    """configs/serve.yaml: cem_goal's planner settings plus the server's."""

    host: str = "0.0.0.0"
    port: int = 8000  # 0: any free port (printed at start)
    control_hz: float = CONTROL_HZ  # the rate the robot runs at (sent to clients in the metadata)
    max_image_side: int = 1024  # larger images are refused with an error reply
    max_message_bytes: int = 16 * 2**20  # larger messages get an error reply (see PlanningServer)


@dataclass
class Request:
    goals: list[Any] | None  # sub-goal images then the goal (usually just the goal); several views: dicts
    observation: Observation | None
    reset: bool


class Session:
    """One connection's planner: its goal, its observed history, its warm start."""

    def __init__(self, service: PlanningService, seed: int):
        self.service, self.seed, self.plans = service, seed, 0
        c = service.config
        self.planner = build_planner(service.model, service.model_config, c.solver, c.mpc, c.fixed(), service.device, seed,
                                     rate=service.rate)
        self.goals: list[np.ndarray] | None = None

    def parse(self, message: Any) -> Request:
        """Validate a decoded request (cheap, on the event loop); raises `RequestError`."""
        if not isinstance(message, dict):
            raise RequestError(f"a request must be a dict of arrays, got {type(message).__name__}")
        service = self.service
        goal = self._goals(message)
        has_obs = any(k in message for k in (*OBSERVATION_KEYS, *service.image_keys))
        if has_obs:
            service.require_views(message, service.image_keys, "observation")
        observation = parse_observation(message, service.max_image_side, service.image_keys) if has_obs else None
        if observation is not None and goal is None and self.goals is None:
            raise RequestError(f"no goal image yet: send {service.goals_wanted()} (uint8 H x W x 3) with the first "
                               f"observation")
        if goal is None and observation is None and not message.get(RESET_KEY):
            raise RequestError(f"empty request: send {[*service.image_keys, CARTESIAN_KEY, GRIPPER_KEY]} and/or "
                               f"{service.goals_wanted()}")
        return Request(goal, observation, bool(message.get(RESET_KEY, False)))

    def _goals(self, message: dict) -> list[Any] | None:
        """The goal images of a request (None: none sent): one per camera key, sub-goals stacked the same way."""
        service = self.service
        others = sorted(k for k in message if isinstance(k, str) and k.startswith("goal/") and k not in service.goal_keys)
        if others:
            raise RequestError(f"{others[0]}: this model sees {service.seen()}; send goal images only as "
                               f"{list(service.goal_keys)}")
        if not any(k in message for k in service.goal_keys):
            return None
        service.require_views(message, service.goal_keys, "goal")
        per_key = {k: check_goals(message[k], k, service.max_image_side) for k in service.goal_keys}
        counts = {k: len(v) for k, v in per_key.items()}
        if len(set(counts.values())) > 1:
            raise RequestError(f"goal images: every camera needs the same number of (sub-)goal images, got {counts}")
        if len(per_key) == 1:
            return next(iter(per_key.values()))
        cameras = service.cameras
        return [{camera: per_key[key][i] for camera, key in zip(cameras, service.goal_keys)}
                for i in range(len(per_key[service.goal_keys[0]]))]

    def handle(self, request: Request) -> dict[str, Any]:
        """Set the goal and/or plan (model work, on the planning thread)."""
        reply: dict[str, Any] = {}
        if request.goals is not None:
            self.goals = [self.service.resize_views(goal) for goal in request.goals]
            self.planner.reset(self.goals)
            self.plans = 0  # an episode's replies do not depend on earlier episodes of the connection
            reply["goal_set"] = True
        elif request.reset and self.goals is not None:
            self.planner.reset(self.goals)
            self.plans = 0
        if request.observation is None:
            return reply
        obs = request.observation
        state = np.concatenate([obs.cartesian, [obs.gripper]]).astype(np.float32)
        self.planner.solver.reseed(derive_seed(self.seed, self.plans))  # deterministic per connection
        self.plans += 1
        start = time.perf_counter()
        frame: Any = obs.image if obs.images is None else dict(zip(self.service.cameras, obs.images.values()))
        actions = self.planner.act(self.service.resize_views(frame), state).numpy().astype(np.float32)
        env_actions = np.concatenate([self.service.rate.to_env(a) for a in actions])  # each model action: skip steps
        reply["actions"] = delta_gripper_to_target(env_actions, obs.gripper)
        reply["goal_index"] = self.planner.goal_index  # which of the sent goal images the plan aimed at
        reply["plan_ms"] = (time.perf_counter() - start) * 1000
        return reply


class PlanningService:
    """The model, its settings and the metadata every client receives on connect."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.device = pick_device(config.device)
        self.threads = set_threads(config.threads)
        self.model, self.model_config, self.checkpoint = load_model(config.checkpoint, self.device)
        if self.model_config.get("data", {}).get("action_mode", "delta_pose") != "delta_pose":
            raise ValueError(f"{self.checkpoint}: the server speaks Cartesian delta-pose actions; this model was "
                             f"trained on recorded env actions")
        self.image_size = int(self.model_config.get("data", {}).get("image_size", 64))
        self.max_image_side = int(config.max_image_side)
        from world_model.models import model_cameras

        # the images a request carries: one per camera the model sees (DROID's exterior key for the default view)
        self.cameras = model_cameras(self.model_config)
        if default_view(self.cameras):
            self.image_keys, self.goal_keys = (IMAGE_KEY,), (GOAL_KEY,)
        else:
            self.image_keys = tuple(wire_image_key(c) for c in self.cameras)
            self.goal_keys = tuple(wire_image_key(c, "goal") for c in self.cameras)
        # a model trained with a frameskip plans once per `skip` control steps; its actions go out as those steps
        self.rate = ActionRate.for_model(self.model_config.get("data", {}), float(config.control_hz))
        bounds = model_bounds(self.model_config, config.fixed())  # per control step: what the robot is sent
        low, high = bounds.low.numpy().copy(), bounds.high.numpy().copy()
        low[GRIPPER_DIM], high[GRIPPER_DIM] = 0.0, 1.0  # the robot side gets an absolute gripper target
        mpc = resolve_mpc(self.model, config.mpc)
        self.metadata = {
            "model": self.model_config["family"], "checkpoint": self.checkpoint.name,
            "protocol": "openpi-websocket-msgpack", "control_hz": float(config.control_hz),
            "action_horizon": int(mpc.execute) * self.rate.skip, "planning_horizon": int(mpc.horizon),
            "frameskip": self.rate.skip, "image_size": self.image_size,
            "action_space": {"type": CARTESIAN_DELTA_ACTION, "dim": ACTION_DIM, "names": list(ACTION_NAMES), "low": low,
                             "high": high, "frame": "base; rotation applied as R(delta) @ R",
                             "gripper": "absolute target, 0 open .. 1 closed"},
            "observation_keys": [*self.image_keys, CARTESIAN_KEY, GRIPPER_KEY], "goal_key": self.goal_keys[0],
            "goal_keys": list(self.goal_keys), "cameras": self.cameras or None, "reset_key": RESET_KEY,
            "max_image_side": self.max_image_side,
            "cost": {"metric": mpc.metric, "readout_weight": mpc.readout_weight}, "torch_threads": self.threads,
        }

    def resize(self, image: np.ndarray) -> np.ndarray:
        frames = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        return resize_uint8(frames, (self.image_size, self.image_size))[0].permute(1, 2, 0).numpy()

    def resize_views(self, frame: Any) -> Any:
        """An image, or a dict camera -> image, at the model's image size."""
        return {k: self.resize(v) for k, v in frame.items()} if isinstance(frame, dict) else self.resize(frame)

    def seen(self) -> str:
        """What the model sees, for error messages."""
        return f"cameras {self.cameras}" if len(self.cameras) > 1 else f"one camera ({(self.cameras or [EXTERIOR_CAMERA])[0]})"

    def goals_wanted(self) -> str:
        return repr(self.goal_keys[0]) if len(self.goal_keys) == 1 else str(list(self.goal_keys))

    def require_views(self, message: dict, keys: tuple[str, ...], what: str) -> None:
        """One line naming the first of `keys` a request lacks, what the model sees and every key it needs."""
        missing = [k for k in keys if k not in message]
        if missing and len(keys) > 1:
            raise RequestError(f"missing key {missing[0]!r}: this model sees {self.seen()}; send one {what} image per "
                               f"camera: {list(keys)}")


class PlanningServer:
    """The websocket server around a `PlanningService`; counts what it served.

    A message over `max_message_bytes` gets a text reply and the connection keeps serving: the websocket
    layer reads messages up to `HARD_LIMIT_FACTOR` times that size, and closes the connection (code 1009)
    only beyond it, so that no client can make the server buffer without bound.
    """

    HARD_LIMIT_FACTOR = 4

    def __init__(self, service: PlanningService, host: str, port: int, max_message_bytes: int):
        self.service, self.host, self.port, self.max_message_bytes = service, host, port, max_message_bytes
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="planner")
        self.clients = self.requests = self.errors = 0

    async def _handle(self, ws: ServerConnection) -> None:
        self.clients += 1
        session = Session(self.service, seed=int(self.service.config.seed))  # same requests, same replies
        loop = asyncio.get_running_loop()
        await ws.send(packb(self.service.metadata))
        prev_total_ms = None
        try:
            async for message in ws:
                start = time.perf_counter()
                self.requests += 1
                try:
                    if len(message) > self.max_message_bytes:
                        raise RequestError(f"message of {len(message)} bytes exceeds max_message_bytes="
                                           f"{self.max_message_bytes}")
                    if isinstance(message, str):
                        raise RequestError("expected a binary msgpack message, got a text message")
                    request = session.parse(unpackb(message))
                    reply = await loop.run_in_executor(self.executor, session.handle, request)
                except RequestError as err:
                    self.errors += 1
                    await ws.send(f"bad request: {err}")
                    continue
                except Exception as err:  # a bug must not take the server down; the client hears about it
                    self.errors += 1
                    log.exception("planning failed")
                    await ws.send(f"internal error: {type(err).__name__}: {err}")
                    continue
                server_ms = (time.perf_counter() - start) * 1000
                reply["server_timing"] = {"infer_ms": reply.pop("plan_ms", 0.0), "server_ms": server_ms,
                                          **({"prev_total_ms": prev_total_ms} if prev_total_ms is not None else {})}
                await ws.send(packb(reply))
                prev_total_ms = (time.perf_counter() - start) * 1000
        except ConnectionClosed:
            pass

    @staticmethod
    def _health(connection: ServerConnection, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    async def serve_forever(self, stop: asyncio.Future) -> None:
        async with serve(self._handle, self.host, self.port, compression=None,
                         max_size=self.HARD_LIMIT_FACTOR * self.max_message_bytes,
                         process_request=self._health) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"serving {self.service.metadata['model']} ({self.service.checkpoint}) on ws://{self.host}:{port} "
                  f"(health: http://{self.host}:{port}/healthz)", flush=True)
            await stop
        self.executor.shutdown(wait=True)


def spawn(checkpoint: str | Path, *overrides: str, timeout: float = 120.0) -> tuple[subprocess.Popen, int]:
    """Start `serve.py` in a child process on a free loopback port; returns (process, port) once it listens.

    Its output keeps being drained on a thread (so the pipe never fills); stop it with `terminate()`.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), f"checkpoint={checkpoint}", "port=0", "host=127.0.0.1",
           *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("serving "):
                port = int(line.split("ws://127.0.0.1:")[1].split()[0])
                threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
                return proc, port
    finally:
        timer.cancel()
    proc.kill()
    raise RuntimeError("planning server did not start:\n" + "".join(lines[-30:]))


def main(cfg: Any) -> None:
    config = plan_settings(ServeConfig, cfg, command_line_keys())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = PlanningServer(PlanningService(config), config.host, int(config.port), int(config.max_message_bytes))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        await server.serve_forever(stop)

    asyncio.run(run())
    print(f"served {server.requests} requests ({server.errors} errors) from {server.clients} clients", flush=True)


if __name__ == "__main__":
    from common.cli import run

    run(main, "serve")
