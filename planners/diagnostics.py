"""What a person looks at after an evaluated episode: a labelled video and one PNG of plots.

- `episode_video(result)`: each frame is observation | current (sub-)goal (| the final goal when sub-goals
  are used | with a pixel decoder beside the model, the frames its plan imagines at the executed chunk's end and
  at the plan's end), upscaled, with the halves labelled, the step, the task distance and, at the end, the outcome; the
  last frame is held for a second (episodes end at success after a few frames).
- `episode_plot(result, path)`: distance to the goal over steps (the env's unit, and the planner's latent distance,
  with sub-goal switches marked), the planner's predicted end-effector path (readout of the predicted latents)
  against the measured one, and the cost per solver iteration of every plan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from planners.episodes import EpisodeResult

FPS = 4
BANNER = 14  # pixels of label row above the images


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, 0), scale, 1)


def _fit(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`image` at the size of `like` (decoded frames are at the model's size, observations may be larger)."""
    if image.shape[:2] == like.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize(like.shape[1::-1], Image.NEAREST))


def _plan_at(result: EpisodeResult, step: int) -> int:
    """The index of the plan behind the frame at `step` (plans split the episode's steps evenly)."""
    return min(step * len(result.trace) // max(result.steps, 1), len(result.trace) - 1)


def _goal_at(result: EpisodeResult, step: int) -> tuple[np.ndarray, str]:
    """The image the agent aimed at when `step` was taken, and its label."""
    goals = [*result.subgoal_images, result.goal_image]
    if len(goals) == 1 or not result.trace:
        return result.goal_image, "goal"
    index = result.trace[_plan_at(result, step)].goal_index
    label = "goal" if index == len(goals) - 1 else f"sub-goal {index + 1}/{len(goals) - 1}"
    return goals[index], label


def episode_video(result: EpisodeResult, scale: int = 4, hold_s: float = 1.0) -> list[np.ndarray]:
    """Labelled frames (H*scale + BANNER, k*W*scale, 3) uint8 of one recorded episode."""
    if not result.frames:
        raise ValueError("the episode was not recorded (record=False): no frames to write")
    out = []
    final = len(result.frames) - 1
    for step, frame in enumerate(result.frames):
        goal, label = _goal_at(result, step)
        panels = [("observation", frame), (label, goal)]
        if result.subgoal_images:  # the final goal stays in view (same frame size throughout)
            panels.append(("final goal", result.goal_image))
        imagined = result.trace[_plan_at(result, step)].imagined if result.trace else None
        if imagined is not None:  # the decoder's view of this plan's rollout (world_model/decoder.py)
            panels += [("imagined: chunk end", _fit(imagined[0], frame)), ("imagined: plan end", _fit(imagined[1], frame))]
        images = [_upscale(image, scale) for _, image in panels]
        h, w = images[0].shape[:2]
        canvas = Image.new("RGB", (w * len(images), h + BANNER), (20, 20, 20))
        for i, image in enumerate(images):
            canvas.paste(Image.fromarray(image), (i * w, BANNER))
        draw = ImageDraw.Draw(canvas)
        for i, (name, _) in enumerate(panels):
            draw.text((i * w + 3, 1), name, fill=(235, 235, 235))
        distance = result.distances[step] if step < len(result.distances) else float("nan")
        status = f"step {step}  dist {distance:.3f} {result.distance_unit}"
        if step == final:
            status += "  SUCCESS" if result.success else "  no success"
        draw.text((3, BANNER + 2), status, fill=(255, 255, 80) if step == final and result.success else (255, 255, 255))
        draw.rectangle([w, BANNER, 2 * w - 1, BANNER + h - 1], outline=(80, 220, 80), width=2)  # mark the goal
        out.append(np.asarray(canvas))
    return out + [out[-1]] * max(int(round(hold_s * FPS)) - 1, 0)


def write_video(result: EpisodeResult, path: str | Path) -> Path:
    import warnings

    import imageio.v2 as imageio

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imageio.mimwrite(path, episode_video(result), fps=FPS, format="ffmpeg", macro_block_size=1)
    return path


XYZ_COLORS = ("tab:red", "tab:green", "tab:blue")


def _plot_goal_readout(ax, plan_steps: np.ndarray, with_readout: list, outputs: list[tuple[int, str]]) -> None:  # noqa: ANN001
    """The readout of the goal (or sub-goal) image each plan aimed at, as dotted steps: where a planner driven by
    the readout cost goes, and what the readout sub-goal switch measures against."""
    aimed = [(plan_steps[i], t.goal_readout) for i, t in with_readout if t.goal_readout is not None]
    if not aimed:
        return
    xs = [x for x, _ in aimed]
    for j, color in outputs:
        ax.step(xs, [r[j] for _, r in aimed], where="post", color=color, linestyle=":", linewidth=1.5)


def episode_plot(result: EpisodeResult, path: str | Path, title: str = "") -> Path:
    """One PNG with the episode's distance, end-effector path and solver-cost plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    plan_steps = np.linspace(0, max(result.steps - 1, 0), len(result.trace))
    with_readout = [(i, t) for i, t in enumerate(result.trace) if t.predicted_readout is not None]
    width = with_readout[0][1].predicted_readout.shape[-1] if with_readout else 0
    dims = list(result.readout_dims or range(width))[:width]  # the state dim behind each readout output
    others = [(j, d) for j, d in enumerate(dims) if d >= 3]  # e.g. the gripper's yaw and reading
    fig, axes = plt.subplots(1, 4 if others else 3, figsize=(20 if others else 15, 4))
    ax = axes[0]
    ax.plot(range(len(result.distances)), result.distances, color="tab:blue", label=f"task distance ({result.distance_unit})")
    ax.set_xlabel("env step"), ax.set_ylabel(f"task distance ({result.distance_unit})", color="tab:blue")
    if result.trace:
        twin = ax.twinx()
        twin.plot(plan_steps, [t.latent_distance for t in result.trace], color="tab:orange", label="latent distance")
        twin.set_ylabel("latent distance to current goal", color="tab:orange")
        switches = [s for s, a, b in zip(plan_steps[1:], result.trace, result.trace[1:]) if b.goal_index != a.goal_index]
        for s in switches:
            ax.axvline(s, color="grey", linestyle=":")
    ax.set_title("distance to goal" + (" (dotted: next sub-goal)" if result.subgoal_images else ""))

    ax = axes[1]
    if result.states:
        measured = np.stack(result.states)[:, :3]
        for d, color in zip(range(3), XYZ_COLORS):
            ax.plot(measured[:, d], color=color, label=f"measured {'xyz'[d]}")
    if with_readout:
        for i, t in with_readout:
            xs = plan_steps[i] + np.arange(1, len(t.predicted_readout) + 1)
            for j, d in enumerate(dims):
                if d < 3:
                    ax.plot(xs, t.predicted_readout[:, j], color=XYZ_COLORS[d], alpha=0.35, linestyle="--")
        _plot_goal_readout(ax, plan_steps, with_readout, [(j, XYZ_COLORS[d]) for j, d in enumerate(dims) if d < 3])
        ax.set_title("end effector: measured (solid), predicted (dashed),\nreadout of the goal image (dotted)")
    else:
        ax.set_title("end effector (the model has no readout: no prediction)")
    ax.set_xlabel("env step"), ax.set_ylabel("m")
    if result.states:
        ax.legend(fontsize=7)

    if others:  # what the readout makes of them, against what they are
        ax = axes[3]
        colors = [f"C{k}" for k in range(len(others))]
        if result.states:
            states = np.stack(result.states)
            for (_, d), color in zip(others, colors):
                if d < states.shape[1]:
                    ax.plot(states[:, d], color=color, label=f"measured state[{d}]")
        observed = [(plan_steps[i], t.observed_readout) for i, t in with_readout if t.observed_readout is not None]
        for (j, d), color in zip(others, colors):
            ax.plot([x for x, _ in observed], [r[j] for _, r in observed], color=color, alpha=0.5, linestyle="--",
                    label=f"readout[{d}] of the observed image")
        _plot_goal_readout(ax, plan_steps, with_readout, [(j, c) for (j, _), c in zip(others, colors)])
        ax.set_xlabel("env step"), ax.set_ylabel("rad / 0 open .. 1 closed")
        ax.set_title("other readout outputs: measured (solid), readout of\nthe observed (dashed) and goal image (dotted)")
        ax.legend(fontsize=7)

    ax = axes[2]
    for t in result.trace:
        ax.plot(t.iteration_costs, color="tab:purple", alpha=0.3)
    ax.set_xlabel("solver iteration"), ax.set_ylabel("lowest cost"), ax.set_title("cost per solver iteration (every plan)")
    fig.suptitle(title or f"{'success' if result.success else 'failure'} in {result.steps} steps, "
                          f"final distance {result.final_distance:.3f} {result.distance_unit}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
