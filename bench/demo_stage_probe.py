"""Where a demo cascade loses the prompt: one stage at a time (docs/results/demo_quality.md).

    python -m bench.demo_stage_probe base WORKDIR --num 2 --settings ddim:64:3 ancestral:64:3
    python -m bench.demo_stage_probe sr STAGES_ROOT --num 12 --settings ddim:16 ancestral:16
    python -m bench.demo_stage_probe cascade DEMO --num 1 --settings ddim,ddim,ddim,ddim ancestral,ancestral,ancestral,ancestral

`base`: the base stage on the 28 grammar prompts x num, one row per sampler:steps:guidance,
with the caption check's shape / direction and the cleanliness figures. `sr`: each SSR stage
(ssr1, ssr2 under STAGES_ROOT) given the held-out clips' true low-res video and caption, one
row per sampler:steps[:aug_level], beside the data and bicubic upsampling of the same clips.
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
from imagen_video.eval import caption_check, prompt_following
from imagen_video.media import video_io
from imagen_video.stage.sampler import Request, StageSampler


def figures(videos, captions) -> str:
  result = caption_check.score(list(videos), captions)
  acc = result["accuracy"]
  bg, edge = caption_check.cleanliness(result)
  return (f"shape {acc['shape']:.0%} direction {acc['direction']:.0%} color {acc['color']:.0%} "
          f"all {acc['all']:.0%} | background {bg:.2f} | edge {edge:.2f} px")


def _prompts(a):
  prompts = prompt_following.grammar_prompts(a.num)
  return prompts[:a.prompts] if a.prompts else prompts


def base(a):
  prompts = _prompts(a)
  s = StageSampler.load(a.path)
  for setting in a.settings:
    sampler, steps, guidance = setting.split(":")
    t = time.time()
    out = s.draw(Request(prompts=tuple(prompts), steps=int(steps), sampler=sampler,
                         guidance=float(guidance), seed=a.seed))
    print(f"base {setting}: {figures(video_io.to_uint8(out), prompts)} ({time.time() - t:.0f} s)", flush=True)


def _bicubic(video, size):
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in video])


def sr(a):
  clips = [ms.sample_clip(0, "test", i) for i in range(a.num)]
  captions = [c.caption for c in clips]
  for name in ("ssr1", "ssr2"):
    s = StageSampler.load(f"{a.path}/{name}")
    frames, size = s.output_shape()[1:3]
    low_size = s.config.stage.low_res[1]
    low = [ms.render(c, frames, low_size, low_size) for c in clips]
    low_res = np.stack(low).astype(np.float32) / 127.5 - 1
    print(f"{name} data {size}px: {figures([ms.render(c, frames, size, size) for c in clips], captions)}")
    print(f"{name} bicubic {low_size}->{size}: {figures([_bicubic(v, size) for v in low], captions)}")
    for setting in a.settings:
      sampler, steps, *aug = setting.split(":")
      if aug:
        s.defaults = dataclasses.replace(s.defaults, aug_level=float(aug[0]))
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
  p.add_argument("part", choices=("base", "sr", "cascade"))
  p.add_argument("path", help="base: the base workdir; sr: the folder holding ssr1/ and ssr2/; "
                 "cascade: the demo's workdir")
  p.add_argument("--num", type=int, default=2, help="base: samples per prompt; sr: held-out clips")
  p.add_argument("--settings", nargs="+", default=["ddim:64:3"])
  p.add_argument("--prompts", type=int, default=0,
                 help="base/cascade: only the first N of the grammar's prompts (0: all 28 x --num)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--batch", type=int, default=28, help="cascade: prompts sampled together")
  p.add_argument("--cascade", default="", help="cascade: a cascade config instead of DEMO's layout")
  a = p.parse_args(argv)
  {"base": base, "sr": sr, "cascade": cascade}[a.part](a)


if __name__ == "__main__":
  main()
