"""The cascade: base stage then SR stages, sampled in one call.

    cascade = Cascade.load(configs_loader.load("configs/cascade_tiny.py"))
    out = cascade.sample(Request(prompts=("a red circle moving left",), seed=0))
    out.video                          # float [B, T, H, W, 3] in [-1, 1], the final stage's
    out.stages                         # [(name, video)] every stage's output

A cascade config lists `stages`, each {name, workdir, sampler, steps, guidance (a float,
or {kind: "oscillating", high, low, constant_fraction, oscillate_until, final}, or
{kind: "interval", weight, start, end}),
aug_level, pose_guidance} and optionally `config` ("file.py:args": its sampling and data
fields; what the params mean always comes from the workdir's saved config). Every stage is
trained on its own; they meet only here. Each prompt is encoded once per distinct text
encoder, and every stage gets the embeddings.
"""
from __future__ import annotations

import hashlib
import time

import ml_collections

from imagen_video.data import batch as batch_keys
from imagen_video.diffusion import samplers
from imagen_video.stage import loading
from imagen_video.stage.sampler import Output, Request, StageSampler, extend
from imagen_video.utils import configs_loader


class Cascade:
  def __init__(self, runs: list[StageSampler]):
    if not runs:
      raise ValueError("a cascade needs at least one stage")
    self.runs = runs
    self.check_shapes()

  @classmethod
  def load(cls, cascade_config, *, mesh=None, stages=None, log=print) -> "Cascade":
    """Every stage from its workdir (EMA weights); stages with the same text encoder share one
    (T5-XXL is loaded once)."""
    encoders, runs = {}, []
    for entry in cascade_config.stages:
      entry = ml_collections.ConfigDict(dict(entry))
      if stages is not None and entry.name not in stages:
        continue
      config = loading.resolve(entry.workdir, configs_loader.load(entry.config)
                               if entry.get("config") else None)
      text_key = _text_key(config.text)
      run = StageSampler.load(entry.workdir, config=config, mesh=mesh,
                              text_encoder=encoders.get(text_key), name=entry.name,
                              steps=entry.get("steps"), sampler=entry.get("sampler"),
                              guidance=entry.get("guidance"), aug_level=entry.get("aug_level"),
                              pose_guidance=entry.get("pose_guidance"))
      encoders.setdefault(text_key, run.stage.text)
      runs.append(run)
      log(f"loaded stage {entry.name} ({run.config.stage.get('kind', 'base')}) from "
          f"{entry.workdir} at step {run.step}")
    return cls(runs)

  def output_shape(self, batch: int = 1) -> tuple[int, ...]:
    return self.runs[-1].output_shape(batch)

  @property
  def config(self):
    """The last stage's config (its output's frames, size and fps; held-out data)."""
    return self.runs[-1].config

  def check_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
    """Each stage's output shape; raises if a stage's input does not match."""
    shapes = []
    for i, run in enumerate(self.runs):
      want = batch_keys.low_res_shape(run.config)
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
      shapes.append(run.output_shape(batch))
    return shapes

  def sample(self, request: Request, *, log=print) -> Output:
    """Every stage in turn; known frames, pose and SDEdit inits are given at the final frames
    and size and reach each stage at its own. Steps, sampler and guidance are each stage's."""
    request.check()
    set_here = [f for f in ("steps", "sampler", "guidance", "pose_guidance")
                if getattr(request, f) is not None]
    if set_here:
      raise ValueError(f"a cascade samples every stage with its own {', '.join(set_here)} "
                       "(the cascade config's): leave them unset in the request")
    stages = []

    def draw(r, call):
      stages.clear()
      video, texts = None, {}
      for i, run in enumerate(self.runs):
        t0 = time.time()
        encoder = id(run.stage.text)
        if r.text is None and encoder not in texts:
          texts[encoder] = run.encode(r.prompts)
        video = run.draw(r, text=texts.get(encoder), low_res=video, stream=i, call=call)
        stages.append((run.name, video))
        steps = run.defaults.steps if r.init is None else samplers.sdedit_steps(run.defaults.steps, r.start)
        log(f"[cascade {i + 1}/{len(self.runs)}] {run.name}: {video.shape} in "
            f"{time.time() - t0:.2f} s ({steps} {run.defaults.sampler} steps"
            + (f" from t = {r.start:g})" if r.init is not None else ")"))
      return video
    if request.extension:  # the stages' outputs of one window would not show the whole video
      video = extend(draw, request, self.output_shape()[1])
      return Output(video, [(self.runs[-1].name, video)], request.seeds())
    video = draw(request, 0)
    return Output(video, list(stages), request.seeds())


def _text_key(text) -> str:
  """Identity of a text encoder: its config, with the tokenizer by content (stages
  trained on different resolutions of one dataset have equal tokenizer files)."""
  from etils import epath
  text = text.copy_and_resolve_references()
  if text.tokenizer and text.tokenizer != "dataset":
    with text.unlocked():
      text.tokenizer = hashlib.sha1(epath.Path(text.tokenizer).read_bytes()).hexdigest()
  return text.to_json()

