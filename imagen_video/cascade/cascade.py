"""The cascade: base stage then SR stages, sampled in one call.

    cascade = Cascade.load(configs_loader.load("configs/cascade_tiny.py"))
    video = cascade.sample(["a red circle moving left"], seed=0)          # uint8 [B, T, H, W, 3]
    video, stages = cascade.sample(prompts, return_stages=True)           # + every stage's output

A cascade config lists `stages`, each {name, config ("file.py:args"), workdir,
sampler, steps, guidance (a float, or {kind: "oscillating", high, low,
constant_fraction, oscillate_until, final}), aug_level}; optional
`config_overrides` ({field: value}) apply to every stage config (e.g. data_dir).
Every stage is trained on its own; they meet only here.
"""
from __future__ import annotations

import dataclasses
import re
import time

import jax
import ml_collections
import numpy as np

from imagen_video.diffusion import guidance as guidance_lib
from imagen_video.diffusion import samplers
from imagen_video.stage import known as known_lib
from imagen_video.stage import pose_input
from imagen_video.stage.model import Stage
from imagen_video.utils import configs_loader


@dataclasses.dataclass
class StageRun:
  name: str
  stage: Stage
  params: dict
  step: int
  sampler: str
  steps: int
  guidance: object
  aug_level: float | None
  pose_guidance: object = None


def guidance_weights(spec, steps: int):
  """A float, or the per-step oscillating schedule of a dict spec."""
  if isinstance(spec, (int, float)):
    return float(spec)
  spec = dict(spec)
  kind = spec.pop("kind", "constant")
  if kind == "oscillating":
    return guidance_lib.oscillating_guidance_weights(steps, **spec)
  if kind == "constant":
    return float(spec["weight"])
  raise ValueError(f"guidance kind {kind!r}: expected 'oscillating' or a number")


def low_res_shape(config) -> tuple[int, int, int] | None:
  """(frames, height, width) an SR stage expects from the previous stage."""
  key = config.stage.get("low_res_key") if "stage" in config else None
  if not key:
    return None
  m = re.fullmatch(r"video_(\d+)x(\d+)x(\d+)", key)
  if not m:
    raise ValueError(f"config.stage.low_res_key={key!r}: expected video_FRAMESxHEIGHTxWIDTH")
  return tuple(int(v) for v in m.groups())


class Cascade:
  def __init__(self, runs: list[StageRun]):
    if not runs:
      raise ValueError("a cascade needs at least one stage")
    self.runs = runs

  @classmethod
  def load(cls, cascade_config, *, mesh=None, stages=None, log=print) -> "Cascade":
    """Loads every stage's EMA weights from its workdir; stages sharing a text
    config share one text encoder (T5-XXL is loaded once)."""
    from imagen_video.train import trainer
    encoders, runs = {}, []
    overrides = dict(cascade_config.get("config_overrides", {}) or {})
    for entry in cascade_config.stages:
      entry = ml_collections.ConfigDict(dict(entry))
      if stages is not None and entry.name not in stages:
        continue
      config = configs_loader.load(entry.config)
      for field, value in overrides.items():
        _set(config, field, value)
      config = trainer.resolve_config(config)
      text_key = _text_key(config.text)
      stage, ema, step = trainer.load_for_sampling(config, entry.workdir, mesh=mesh,
                                                   text_encoder=encoders.get(text_key))
      encoders.setdefault(text_key, stage.text)
      runs.append(StageRun(entry.name, stage, ema, step, entry.sampler, int(entry.steps),
                           entry.guidance, entry.get("aug_level"), entry.get("pose_guidance")))
      log(f"loaded stage {entry.name} ({stage.config.stage.get('kind', 'base')}) from "
          f"{entry.workdir} at step {step}")
    return cls(runs)

  def check_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
    """Each stage's output shape; raises if a stage's input does not match."""
    shapes = []
    for i, run in enumerate(self.runs):
      out = run.stage.output_shape(batch)
      want = low_res_shape(run.stage.config)
      if i == 0 and want is not None:
        raise ValueError(f"stage {run.name} is the first stage but expects a low-res input "
                         f"{want}; the first stage must be a base stage")
      if i > 0:
        have = shapes[-1][1:4]
        if want is None:
          raise ValueError(f"stage {run.name} follows {self.runs[i - 1].name} but takes no "
                           f"low-res input (config.stage.kind is base)")
        if tuple(have) != tuple(want):
          raise ValueError(f"stage {run.name} expects a {want[0]}x{want[1]}x{want[2]} "
                           f"(frames x height x width) input, but stage {self.runs[i - 1].name} "
                           f"produces {have[0]}x{have[1]}x{have[2]}")
      shapes.append(out)
    return shapes

  def sample(self, prompts, seed: int = 0, *, return_stages: bool = False, log=print,
             known=None, conditioning: str = "reconstruction", recon_weight=None, pose=None,
             init=None, start: float = 1.0):
    """uint8 video [B, T, H, W, 3] for the prompts (and each stage's uint8 output).

    `known` (a `stage.known.Known`, usually at the final frames and size) conditions
    every stage on the known frames/pixels at that stage's frames and size. `pose`
    (keypoints [T, 17, 2] or [B, T, 17, 2], visibility) at the final frame rate guides
    every pose-guided stage by its skeleton maps at that stage's frames and size, with
    the stage's `pose_guidance` weight; without it those stages sample pose-free.
    `init` (float [B, T, H, W, 3] in [-1, 1], usually at the final frames and size) with
    `start` < 1 re-denoises it (SDEdit): every stage starts from `init` at its own frames and
    size noised to time `start`, in `samplers.sdedit_steps` of its steps."""
    from imagen_video.media import video_io
    prompts = list(prompts)
    self.check_shapes(len(prompts))
    video, outputs = None, []
    for i, run in enumerate(self.runs):
      t0 = time.time()
      key = jax.random.fold_in(jax.random.key(seed), i)
      text_params = run.params.get("text", run.stage.text.params)
      maps = None
      shape = run.stage.output_shape(len(prompts))
      steps = run.steps if init is None else samplers.sdedit_steps(run.steps, start)
      if pose is not None and run.stage.model_config.get("pose_channels", 0):
        maps = pose_input.pose_maps(*pose, shape)
      video = run.stage.sample(run.params["unet"], text_params, prompts, key, steps=steps,
                               sampler=run.sampler, guidance=guidance_weights(run.guidance, steps),
                               low_res=video, aug_level=run.aug_level, known=known,
                               conditioning=conditioning, recon_weight=recon_weight,
                               pose_maps=maps,
                               pose_guidance=guidance_weights(run.pose_guidance, steps)
                               if run.pose_guidance is not None else None,
                               init=None if init is None else known_lib.resized(init, shape),
                               start=start)
      video = jax.block_until_ready(video)
      outputs.append(video_io.to_uint8(np.asarray(video)))
      log(f"[cascade {i + 1}/{len(self.runs)}] {run.name}: {tuple(video.shape)} in "
          f"{time.time() - t0:.2f} s ({steps} {run.sampler} steps"
          + (f" from t = {start:g})" if init is not None else ")"))
    return (outputs[-1], outputs) if return_stages else outputs[-1]


def _text_key(text) -> str:
  """Identity of a text encoder: its config, with the tokenizer by content (stages
  trained on different resolutions of one dataset have equal tokenizer files)."""
  import hashlib
  text = text.copy_and_resolve_references()
  if text.tokenizer:
    with open(text.tokenizer, "rb") as f, text.unlocked():
      text.tokenizer = hashlib.sha1(f.read()).hexdigest()
  return text.to_json()


def _set(config, dotted: str, value):
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  with node.unlocked():  # every node on a config path is a ConfigDict
    node[leaf] = value
