"""imagen-video sample --config CONFIG --workdir DIR --prompt TEXT --out FILE.mp4
   imagen-video sample --config CONFIG --workdir DIR --prompts FILE --out_dir DIR

Samples one stage from its newest checkpoint (EMA weights). With --prompt it
writes FILE.mp4 (the --num samples side by side) and FILE.png (contact sheet);
with --prompts (one per line) one mp4 per prompt and sample plus
`samples.jsonl` (prompt, seed, file) in --out_dir, compiling the sampler once.
The guidance weight is a traced value: changing it never recompiles.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import flags

from imagen_video.cli import flags_util


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags.DEFINE_string("workdir", None, "training workdir with checkpoints/", flag_values=fv)
  flags.DEFINE_string("prompt", None, "one prompt", flag_values=fv)
  flags.DEFINE_string("prompts", None, "file with one prompt per line", flag_values=fv)
  flags.DEFINE_string("out", None, "output mp4 (with --prompt)", flag_values=fv)
  flags.DEFINE_string("out_dir", None, "output folder (with --prompts)", flag_values=fv)
  flags.DEFINE_integer("num", 1, "samples per prompt", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "random seed", flag_values=fv)
  flags.DEFINE_integer("steps", None, "sampling steps (default: config.sample.steps)", flag_values=fv)
  flags.DEFINE_float("guidance", None, "guidance weight (default: config.sample.guidance)", flag_values=fv)
  flags.DEFINE_string("sampler", None, "ddim | ancestral (default: config.sample.sampler)", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None or not fv.workdir:
    raise SystemExit(f"{argv[0]}: --config and --workdir are required")
  if bool(fv.prompt) == bool(fv.prompts):
    raise SystemExit(f"{argv[0]}: give exactly one of --prompt and --prompts")
  if fv.prompt and not fv.out:
    raise SystemExit(f"{argv[0]}: --prompt needs --out FILE.mp4")
  if fv.prompts and not fv.out_dir:
    raise SystemExit(f"{argv[0]}: --prompts needs --out_dir DIR")
  prompts = [fv.prompt] if fv.prompt else _read_prompts(fv.prompts)
  s = fv.config.sample
  opts = dict(steps=fv.steps or s.steps, guidance=s.guidance if fv.guidance is None else fv.guidance,
              sampler=fv.sampler or s.sampler)
  run(fv.config, fv.workdir, prompts, num=fv.num, seed=fv.seed, out=fv.out, out_dir=fv.out_dir, **opts)
  return 0


def _read_prompts(path: str) -> list[str]:
  with open(path) as f:
    prompts = [line.strip() for line in f if line.strip()]
  if not prompts:
    raise SystemExit(f"{path}: no prompts (one per line expected)")
  return prompts


def run(config, workdir, prompts, *, num, seed, steps, guidance, sampler, out=None, out_dir=None):
  import jax
  from imagen_video.media import contact_sheet, video_io
  from imagen_video.train import trainer
  stage, ema, step = trainer.load_for_sampling(config, workdir)
  text_params = ema.get("text", stage.text.params)
  lead = jax.process_index() == 0
  fps = config.sample.get("fps", 8.0)
  records, sheet_clips, sheet_caps = [], [], []
  for p_index, prompt in enumerate(prompts):
    t0 = time.time()
    key = jax.random.fold_in(jax.random.key(seed), p_index)
    video = stage.sample(ema["unet"], text_params, [prompt] * num, key, steps=steps,
                         sampler=sampler, guidance=guidance)
    clips = video_io.to_uint8(np.asarray(video))
    print(f"[{p_index + 1}/{len(prompts)}] {prompt!r}: {num} sample(s) in {time.time() - t0:.1f} s",
          flush=True)
    sheet_clips += list(clips)
    sheet_caps += [prompt] * num
    if not lead:
      continue
    if out:
      video_io.write_mp4(out, np.concatenate(list(clips), axis=2), fps=fps, scale=4)
      print(f"wrote {out}")
    else:
      os.makedirs(out_dir, exist_ok=True)
      for i, clip in enumerate(clips):
        name = f"{p_index:04d}_{i:02d}.mp4"
        video_io.write_mp4(os.path.join(out_dir, name), clip, fps=fps, scale=4)
        records.append({"prompt": prompt, "seed": seed, "prompt_index": p_index, "sample": i,
                        "file": name, "checkpoint_step": step})
  if lead:
    sheet = os.path.splitext(out)[0] + ".png" if out else os.path.join(out_dir, "contact_sheet.png")
    contact_sheet.contact_sheet(sheet_clips, sheet_caps, sheet, title=f"step {step}")
    print(f"wrote {sheet}")
    if out_dir:
      with open(os.path.join(out_dir, "samples.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
      print(f"wrote {os.path.join(out_dir, 'samples.jsonl')} ({len(records)} samples)")
  return sheet_clips
