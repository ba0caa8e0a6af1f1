"""The one way to sample a stage: a typed `Request` in, float videos out.

    sampler = StageSampler.load("demo/stages/base")                 # or StageSampler(stage, ema)
    out = sampler.sample(Request(prompts=("a red circle moving left",), seed=0))
    out.video                                                       # float [B, T, H, W, 3] in [-1, 1]

The CLI, every evaluator, the ablation runner, the benchmarks, the notebooks, the trainer's
samples and the cascade (`cascade.Cascade`) all sample through `StageSampler.draw`; nothing
else builds a sampling loop.

Seed rule (one for the project): sample b of a request draws every random number from
`samplers.seed_keys(seed + b, stream, call)`, where `stream` is the cascade stage (0 for a
stage sampled alone) and `call` counts a request's sampler calls (0; extension windows and
refreshes 1, 2, ...). So a sample depends on its seed and settings, not on its batch.
"""
from __future__ import annotations

import dataclasses
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from imagen_video.diffusion import guidance as guidance_lib
from imagen_video.diffusion import samplers
from imagen_video.diffusion import schedule as schedule_lib
from imagen_video.stage import conditioning as conditioning_lib
from imagen_video.stage import known as known_lib
from imagen_video.stage import pose_input
from imagen_video.utils import mfu

RECON_WEIGHT = 4.0  # reconstruction guidance w_r when the config names none (tiny base: 4 > 8 > 16, docs/results/conditional.md)


@dataclasses.dataclass(frozen=True)
class Extension:
  """Autoregressive extension of given frames (`known.extend`)."""
  video: np.ndarray   # [1 or B, k, H, W, 3] in [-1, 1]: the given frames at the output's size
  frames: int         # the length to reach
  context: int | None = None  # frames of context per window (default three quarters of one)
  refresh: float = 0.0        # re-denoise each window from this time first (0: off)
  refresh_floor: float = known_lib.REFRESH_FLOOR


@dataclasses.dataclass(frozen=True)
class Request:
  """What to sample. Unset sampler settings take the stage's (or cascade entry's) defaults."""
  prompts: tuple[str, ...] = ()
  text: tuple | None = None       # (embeddings [B, L, D], mask [B, L]) instead of prompts
  seed: int = 0                   # sample b uses seed + b
  steps: int | None = None
  sampler: str | None = None      # a samplers.Sampler value
  guidance: object = None         # number, per-step weights or an oscillating spec
  known: known_lib.Known | None = None  # known frames/pixels (any multiple of the output shape)
  conditioning: str = "reconstruction"  # how `known` conditions: or 'replacement'
  recon_weight: float | None = None
  pose: tuple | None = None       # (keypoints [T, 17, 2], visibility [T, 17]) at the final frame rate
  pose_guidance: object = None
  init: np.ndarray | None = None  # SDEdit: a video in [-1, 1] re-denoised from time `start`
  start: float = 1.0
  extension: Extension | None = None

  @property
  def batch(self) -> int:
    return len(self.prompts) if self.text is None else int(self.text[0].shape[0])

  def seeds(self) -> np.ndarray:
    return self.seed + np.arange(self.batch)

  def check(self) -> "Request":
    """One clear error for a bad setting, before any work."""
    if self.text is None and not self.prompts:
      raise ValueError("Request: give prompts (or text embeddings)")
    if any(not isinstance(p, str) or not p.strip() for p in self.prompts):
      raise ValueError("Request.prompts: every prompt must be a non-empty string")
    if not 0 <= self.seed <= samplers.MAX_SEED - self.batch:
      raise ValueError(f"seed {self.seed}: expected an integer in [0, {samplers.MAX_SEED - self.batch}]")
    if self.steps is not None and int(self.steps) < 1:
      raise ValueError(f"steps {self.steps}: expected at least 1")
    if self.sampler is not None:
      samplers.Sampler.parse(self.sampler)
    for name in ("guidance", "pose_guidance", "recon_weight"):
      value = getattr(self, name)
      if isinstance(value, (int, float)) and not np.isfinite(value):
        raise ValueError(f"{name} {value}: expected a finite number")
    if self.conditioning not in samplers.CONDITIONING:
      raise ValueError(f"conditioning {self.conditioning!r}: expected one of {samplers.CONDITIONING}")
    if not 0.0 < self.start <= 1.0 or (self.init is None and self.start != 1.0):
      raise ValueError(f"start {self.start}: expected a time in (0, 1], below 1 only with an init video")
    e = self.extension
    if e is not None:
      if self.known is not None or self.init is not None:
        raise ValueError("extension excludes known frames and an init video")
      if not 0.0 <= e.refresh < 1.0:
        raise ValueError(f"refresh {e.refresh}: expected a time in [0, 1) (0 = off)")
      if not 0.0 <= e.refresh_floor <= 1.0:
        raise ValueError(f"refresh_floor {e.refresh_floor}: expected a share in [0, 1]")
    return self


@dataclasses.dataclass
class Output:
  video: np.ndarray                 # float [B, T, H, W, 3] in [-1, 1]: the final output
  stages: list[tuple[str, np.ndarray]]  # every stage's output (one entry for one stage)
  seeds: np.ndarray


@dataclasses.dataclass(frozen=True)
class Timing:
  """One sampler run (`StageSampler.draw`): compile and run seconds, FLOPs per device per step
  from the compiled loop's cost analysis (None: unknown), the devices' peak (None: unknown)."""
  steps: int
  compile_s: float
  run_s: float
  flops_per_step: float | None
  peak: mfu.Peak | None

  @property
  def ms_per_step(self) -> float:
    return 1e3 * self.run_s / self.steps

  def throughput(self) -> dict:
    """{'tflops_per_device', 'mfu'} where known."""
    return mfu.throughput(self.flops_per_step, self.run_s / self.steps, self.peak)

  def describe(self) -> str:
    speed = mfu.format_throughput(self.throughput())
    return (f"{self.steps} steps, {self.ms_per_step:.1f} ms/step (compile {self.compile_s:.1f} s)"
            + (f", {speed}" if speed else "") + (f" [{self.peak.label}]" if self.peak and speed else ""))


@dataclasses.dataclass(frozen=True)
class Defaults:
  """A stage's sampler settings where a request leaves them unset."""
  steps: int
  sampler: str
  guidance: object
  aug_level: float | None = None
  pose_guidance: object = None

  @classmethod
  def from_config(cls, config, **overrides) -> "Defaults":
    s = config.sample
    d = dict(steps=int(s.steps), sampler=s.sampler, guidance=s.guidance)
    d.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**d)


class StageSampler:
  """One stage's network, params and default settings; `sample(request)` or, inside a cascade,
  `draw(request, text=, low_res=, stream=, call=)`. Each draw appends its `Timing` to
  `timings`."""

  def __init__(self, stage, params: dict, step: int = 0, *, defaults: Defaults | None = None,
               name: str = "stage"):
    self.stage, self.params, self.step, self.name = stage, params, int(step), name
    self.timings: list[Timing] = []
    self.defaults = defaults or Defaults.from_config(stage.config)
    self.text_params = params.get("text", stage.text.params)

  @classmethod
  def load(cls, workdir, *, config=None, step=None, mesh=None, text_encoder=None, name=None,
           **defaults) -> "StageSampler":
    """From a workdir (`stage.loading.load`); `defaults` override config.sample's."""
    from imagen_video.stage import loading
    stage, ema, step = loading.load(workdir, config=config, mesh=mesh, step=step,
                                    text_encoder=text_encoder)
    return cls(stage, ema, step, defaults=Defaults.from_config(stage.config, **defaults),
               name=name or str(workdir).rstrip("/").rsplit("/", 1)[-1])

  @property
  def config(self):
    return self.stage.config

  def output_shape(self, batch: int = 1) -> tuple[int, ...]:
    return self.stage.output_shape(batch)

  def encode(self, prompts) -> tuple[jax.Array, jax.Array]:
    """(embeddings, mask) of the prompts by this stage's text encoder."""
    ids, mask = self.stage.text.tokenize(list(prompts))
    return self.stage.text.encode_with(self.text_params, ids, mask)

  def sample(self, request: Request) -> Output:
    request.check()
    draw = lambda r, call: self.draw(r, call=call)
    video = extend(draw, request, self.output_shape()[1]) if request.extension else draw(request, 0)
    return Output(video, [(self.name, video)], request.seeds())

  def draw(self, r: Request, *, text=None, low_res=None, stream: int = 0, call: int = 0) -> np.ndarray:
    """Videos in [-1, 1] [B, T, H, W, 3] for request `r` (no extension): `text` (embeddings,
    mask) precomputed by the cascade, `low_res` the previous stage's output for SR stages."""
    stage, config, d = self.stage, self.stage.config, self.defaults
    shape = stage.output_shape(r.batch)
    steps = int(r.steps or d.steps)
    steps = samplers.sdedit_steps(steps, r.start) if r.init is not None else steps
    weight = guidance_lib.weights(d.guidance if r.guidance is None else r.guidance, steps)
    pose_weight = d.pose_guidance if r.pose_guidance is None else r.pose_guidance
    emb, mask = text if text is not None else r.text if r.text is not None else self.encode(r.prompts)
    keys = samplers.seed_keys(r.seeds(), stream, call)
    cond = dict(text_emb=emb, text_mask=mask)
    maps = None
    if r.pose is not None and stage.model_config.get("pose_channels", 0):
      maps = pose_input.pose_maps(*r.pose, shape)
    cond.update(stage.pose_inputs(maps, shape))
    if maps is None or pose_weight is None or not _guided(guidance_lib.weights(pose_weight, steps)):
      pose_weight = None
    up = conditioning_lib.low_res_input(config, low_res, shape)
    cond.update(conditioning_lib.sampling_inputs(config, up, d.aug_level, keys))
    known = None if r.known is None else r.known.to_shape(shape)
    s, dc = config.sample, config.diffusion
    plan = samplers.Plan(shape, steps, r.sampler or d.sampler, dc.objective, stage.default_thresholding(),
                         schedule_lib.spec_from_config(dc),
                         guided=_guided(weight), guidance_input=stage.guidance_input,
                         conditioning=None if known is None else r.conditioning,
                         learned_variance=bool(dc.get("learned_variance", False)))
    recon = r.recon_weight if r.recon_weight is not None else s.get("recon_weight", RECON_WEIGHT)
    controls = samplers.Controls(weight, None if pose_weight is None else guidance_lib.weights(pose_weight, steps),
                                 s.get("percentile", 99.5), s.get("gamma", 0.0), recon,
                                 s.get("threshold_max", float("inf")))
    diffused = lambda v: conditioning_lib.to_diffused(config, jnp.asarray(v, jnp.float32), up)
    args = (stage.model_fn, self.params["unet"], cond, keys, plan, controls)
    kwargs = dict(known=None if known is None else {"x": diffused(known.video), "mask": known.mask},
                  init=None if r.init is None else diffused(known_lib.resized(r.init, shape)),
                  start=r.start)
    t0 = time.perf_counter()
    compiled = samplers.compiled(*args, **kwargs)  # compiled apart, so the run is timed alone
    t1 = time.perf_counter()
    out = jax.block_until_ready(samplers.sample(*args, **kwargs))
    self.timings.append(_timing(compiled, out, steps, t1 - t0, time.perf_counter() - t1))
    if up is not None:  # an SR stage: back to frames, agreeing with its input
      out = conditioning_lib.back_project(config, conditioning_lib.from_diffused(config, out, up), low_res)
    # Frames: a stage sampled without thresholding (residual SR; the demo's base) can overshoot.
    out = jnp.clip(out, -1.0, 1.0)
    if up is not None and known is not None:
      out = known.mask * known.video + (1 - known.mask) * out
    return _gathered(out)


def extend(draw, request: Request, window: int) -> np.ndarray:
  """`request.extension` by `known.extend`: `draw(request, call)` samples each window (known
  frames by the request's conditioning) and each refresh (SDEdit from the extension's
  refresh time, text only), with a new call number each, all in float."""
  e = request.extension
  calls = itertools.count(1)
  base = dataclasses.replace(request, extension=None)
  given = np.broadcast_to(np.asarray(e.video, np.float32), (request.batch,) + np.shape(e.video)[1:])

  def window_fn(known):
    return draw(dataclasses.replace(base, known=known), next(calls))

  def refresh_fn(video, known):
    return draw(dataclasses.replace(base, init=video, start=e.refresh), next(calls))
  return known_lib.extend(window_fn, given, e.frames, window=window,
                          context=e.context or known_lib.default_context(window),
                          refresh=refresh_fn if e.refresh else None, refresh_floor=e.refresh_floor)


def _timing(compiled, out, steps: int, compile_s: float, run_s: float) -> Timing:
  flops = mfu.step_flops(compiled, steps)
  local = [d for d in out.sharding.device_set if d.process_index == jax.process_index()]
  return Timing(steps, compile_s, run_s, None if flops is None else flops / steps,
                mfu.device_peak(sorted(local, key=lambda d: d.id)) if flops else None)


def _guided(weight) -> bool:
  """False for a constant weight of 1 (the plain conditional model: no unconditional half)."""
  w = np.asarray(weight)
  return not (w.ndim == 0 and float(w) == 1.0)


def _gathered(video) -> np.ndarray:
  """A (possibly multi-process sharded) array as numpy on every process."""
  if isinstance(video, jax.Array) and not video.is_fully_addressable:
    from jax.experimental import multihost_utils
    video = multihost_utils.process_allgather(video, tiled=True)
  return np.asarray(video, np.float32)

