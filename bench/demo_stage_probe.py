"""Where a demo cascade loses the prompt: one stage at a time (docs/results/demo_quality.md).

    python -m bench.demo_stage_probe base WORKDIR --num 2 --settings ddim:64:3 ancestral:64:3 ancestral:64:3@0.25-0.75:none
    python -m bench.demo_stage_probe denoise WORKDIR --num 16
    python -m bench.demo_stage_probe sr STAGES_ROOT --num 12 --settings ddim:16 ancestral:16
    python -m bench.demo_stage_probe cascade DEMO --num 1 --settings ddim,ddim,ddim,ddim ancestral,ancestral,ancestral,ancestral

`base`: the base stage on the 28 grammar prompts x num, one row per
sampler:steps:guidance[:thresholding] (guidance W@A-B: W over that fraction of the steps, noisiest
first, 1 elsewhere), with the caption check's shape / direction, the cleanliness figures and what
the background is made of (per-channel mean, the brightest channel after a 5x5 box filter, the
share of background pixels above 4 grey levels). `denoise`: the base's one-step x0 on `num`
held-out clips of its own data, noised to several log-SNRs: the predicted background's grey
level. `sr`: each SSR stage (ssr1, ssr2 under STAGES_ROOT) given held-out clips of its own data
(their true low-res video and caption), one row per sampler:steps[:aug_level], beside the data
and bicubic upsampling of the same clips.
`cascade`: the demo cascade under DEMO (DEMO/stages, DEMO/tensorflow_datasets) with each
stage's sampler replaced (one comma list per setting), every stage's row of the caption check.
All sample through `StageSampler.draw`, as the cascade does.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from PIL import Image

from imagen_video.data import moving_shapes as ms
from imagen_video.diffusion import guidance as guidance_lib
from imagen_video.eval import caption_check, prompt_following
from imagen_video.media import video_io
from imagen_video.stage.sampler import Request, StageSampler


def figures(videos, captions) -> str:
  result = caption_check.score(list(videos), captions)
  acc = result["accuracy"]
  bg, edge = caption_check.cleanliness(result)
  return (f"shape {acc['shape']:.0%} direction {acc['direction']:.0%} color {acc['color']:.0%} "
          f"all {acc['all']:.0%} | background {bg:.2f} | edge {edge:.2f} px")


def background(video) -> str:
  """What the background of float videos [B, T, H, W, 3] in [-1, 1] is made of: pixels more
  than 2 px from anything brighter than 0.3."""
  from scipy.ndimage import binary_dilation, uniform_filter
  v = (np.clip(np.asarray(video, np.float32), -1, 1) + 1) / 2
  lit = v.max(-1) > 0.3
  far = ~np.stack([binary_dilation(m, iterations=2, structure=np.ones((1, 3, 3))) for m in lit])
  if not far.any():
    return "no background pixels"
  px = v[far] * 255
  smooth = uniform_filter(v, size=(1, 1, 5, 5, 1))[far].max(-1).mean() * 255
  return (f"RGB {' / '.join(f'{c:.1f}' for c in px.mean(0))} | 5x5 {smooth:.1f} | "
          f">4: {np.mean(px.max(-1) > 4):.0%}")


def _clips(config, num: int):
  """`num` held-out clips of the stage's own `moving_shapes` data (its sizes and gap)."""
  return [ms.sample_clip(0, "test", i, **ms.size_args(config.data.builder)) for i in range(num)]


def _prompts(a):
  prompts = prompt_following.grammar_prompts(a.num)
  return prompts[:a.prompts] if a.prompts else prompts


def base(a):
  prompts = _prompts(a)
  s = StageSampler.load(a.path)
  for setting in a.settings:
    sampler, steps, guidance, *threshold = setting.split(":")
    if threshold:
      s.stage.config.sample.thresholding = threshold[0]
    t = time.time()
    out = s.draw(Request(prompts=tuple(prompts), steps=int(steps), sampler=sampler,
                         guidance=guidance_lib.parse_spec(guidance), seed=a.seed))
    print(f"base {setting}: {figures(video_io.to_uint8(out), prompts)} | {background(out)} "
          f"({time.time() - t:.0f} s)", flush=True)


def denoise(a):
  import jax.numpy as jnp
  from imagen_video.diffusion.objectives import pred_to_x0_eps
  from imagen_video.diffusion.schedule import alpha_sigma
  s = StageSampler.load(a.path)
  frames, height, width = s.output_shape()[1:4]
  clips = _clips(s.stage.config, a.num)
  video = np.stack([ms.render(c, frames, height, width) for c in clips]).astype(np.float32) / 127.5 - 1
  emb, mask = s.encode([c.caption for c in clips])
  for log_snr in (-6.0, -3.0, 0.0, 3.0, 6.0):
    ls = jnp.full((len(clips),), log_snr, jnp.float32)
    alpha, sigma = (np.asarray(v)[:, None, None, None, None] for v in alpha_sigma(ls))
    x0 = []
    for seed in range(3):
      z = jnp.asarray(alpha * video + sigma * np.random.RandomState(seed).randn(*video.shape).astype(np.float32))
      pred = s.stage.model_fn(s.params["unet"], z, ls, {"text_emb": emb, "text_mask": mask})
      x0.append(np.asarray(pred_to_x0_eps(pred, z, ls, s.stage.config.diffusion.objective)[0]))
    print(f"denoise log-SNR {log_snr:+.0f}: x0 background {background(np.concatenate(x0))}", flush=True)


def _bicubic(video, size):
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in video])


def sr(a):
  for name in ("ssr1", "ssr2"):
    s = StageSampler.load(f"{a.path}/{name}")
    clips = _clips(s.stage.config, a.num)
    captions = [c.caption for c in clips]
    frames, size = s.output_shape()[1:3]
    low_size = s.config.stage.low_res[1]
    low = [ms.render(c, frames, low_size, low_size) for c in clips]
    low_res = np.stack(low).astype(np.float32) / 127.5 - 1
    print(f"{name} data {size}px: {figures([ms.render(c, frames, size, size) for c in clips], captions)}")
    print(f"{name} bicubic {low_size}->{size}: {figures([_bicubic(v, size) for v in low], captions)}")
    default_aug = s.defaults.aug_level
    for setting in a.settings:  # a setting without its own aug level gets the stage's
      sampler, steps, *aug = setting.split(":")
      s.defaults = dataclasses.replace(s.defaults, aug_level=float(aug[0]) if aug else default_aug)
      t = time.time()
      out = s.draw(Request(prompts=tuple(captions), steps=int(steps), sampler=sampler, seed=a.seed),
                   low_res=low_res)
      print(f"{name} {setting}: {figures(video_io.to_uint8(out), captions)} ({time.time() - t:.0f} s)",
            flush=True)


def cascade(a):
  from imagen_video.cascade.cascade import Cascade
  from imagen_video.eval import sampling
  from imagen_video.utils import configs_loader
  spec = a.cascade or f"configs/cascade_tiny.py:root={a.path}/stages,data_dir={a.path}/tensorflow_datasets"
  c = Cascade.load(configs_loader.load(spec), log=lambda *_: None)
  prompts = _prompts(a)
  for setting in a.settings:
    names = setting.split(",")
    if len(names) != len(c.runs):
      raise SystemExit(f"--settings {setting!r}: expected {len(c.runs)} samplers, one per stage")
    for run, name in zip(c.runs, names):
      run.defaults = dataclasses.replace(run.defaults, sampler=name)
    t = time.time()
    _, stages = sampling.draw(c, prompts, seed=a.seed, batch=a.batch)
    print(f"cascade {setting} ({time.time() - t:.0f} s)\n{prompt_following.stage_table(stages, prompts)}",
          flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("part", choices=("base", "denoise", "sr", "cascade"))
  p.add_argument("path", help="base, denoise: the base workdir; sr: the folder holding ssr1/ and ssr2/; "
                 "cascade: the demo's workdir")
  p.add_argument("--num", type=int, default=2, help="base: samples per prompt; sr, denoise: held-out clips")
  p.add_argument("--settings", nargs="+", default=["ddim:64:3"])
  p.add_argument("--prompts", type=int, default=0,
                 help="base/cascade: only the first N of the grammar's prompts (0: all 28 x --num)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--batch", type=int, default=28, help="cascade: prompts sampled together")
  p.add_argument("--cascade", default="", help="cascade: a cascade config instead of DEMO's layout")
  a = p.parse_args(argv)
  {"base": base, "denoise": denoise, "sr": sr, "cascade": cascade}[a.part](a)


if __name__ == "__main__":
  main()
