"""imagen-video sample --config CONFIG --workdir DIR --prompt TEXT --out FILE.mp4
   imagen-video sample --workdir DIR --prompt TEXT --out FILE.mp4          (the workdir's own config)
   imagen-video sample --cascade CASCADE_CONFIG --prompt TEXT --out FILE.mp4
   ... --prompts FILE --out_dir DIR   (instead of --prompt/--out)

One stage (--workdir, EMA weights of the newest checkpoint; --config adds its sampling
settings) or a whole cascade (--cascade: every stage from its own workdir). With --prompt it
writes FILE.mp4 (the --num samples side by side) and FILE.png (contact sheet; for a cascade
one row per stage); with --prompts (one per line) one mp4 per prompt and sample plus
`samples.jsonl` (prompt, seed, file) in --out_dir. Each sampler run prints its ms per step
and TFLOP/s and MFU per device (XLA's FLOPs of the compiled loop). Sample i of prompt p uses
seed --seed + p * --num + i, so `--prompt P --seed S` redraws any listed sample alone.
Guidance weights are traced: changing them never recompiles. Only process 0 writes files.

Conditional generation (one stage or the cascade; inputs are resized to the output size):
  --first_frame IMG                  image-to-video: IMG is frame 0
  --keyframes A.png@0,B.png@11       interpolation: keyframes at any output frame indices
  --init_video V.mp4                 prediction: V's frames are the first ones (its last
                                     --context frames, default 3/4 of a window, if longer), the
                                     rest is generated; with --extend_to N, autoregressive
                                     extension to N frames (--context frames of overlap per window;
                                     --refresh T re-denoises each window from time T first)
  --init_video V.mp4 --mask M.png    inpainting: white pixels of M (an image for every frame,
                                     or a video) are generated, the rest of V kept
by reconstruction guidance (--conditioning, --recon_weight) or replacement.

Pose-guided stages (configs/cascade_pose_tiny.py): --pose FILE.json (COCO keypoints, or
OpenPose per-frame JSON) gives the skeleton sequence; see `cli/pose_flags.py`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from absl import flags

from imagen_video.cli import flags_util, known_flags, pose_flags, sampling_flags


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags_util.define_config(fv, argv, name="cascade", help_string="cascade config file[:args]")
  flags.DEFINE_string("workdir", None, "training workdir with checkpoints/ (one stage)", flag_values=fv)
  flags.DEFINE_string("prompt", None, "one prompt", flag_values=fv)
  flags.DEFINE_string("prompts", None, "file with one prompt per line", flag_values=fv)
  flags.DEFINE_string("out", None, "output .mp4 (with --prompt)", flag_values=fv)
  flags.DEFINE_string("out_dir", None, "output folder (with --prompts)", flag_values=fv)
  flags.DEFINE_integer("num", 1, "samples per prompt", flag_values=fv)
  flags.DEFINE_bool("strict_prompts", False, "refuse prompts longer than the text encoder's "
                    "max_length (default: a warning; the model reads only the first tokens)",
                    flag_values=fv)
  sampling_flags.define(fv)
  known_flags.define(fv)
  pose_flags.define(fv)
  flags_util.parse(fv, argv, __doc__)
  prog = argv[0]
  prompts = check(fv, prog)
  sampler = load(fv)
  check_lengths(sampler, prompts, strict=fv.strict_prompts, prog=prog)
  fields = {**sampling_flags.request_fields(fv), **known_flags.request_fields(fv, sampler.output_shape()),
            **pose_flags.request_fields(fv, sampler.output_shape()[1])}
  from imagen_video.stage.sampler import Request
  request = Request(**fields)
  try:
    dataclasses.replace(request, prompts=tuple(prompts[:1]) * fv.num, seed=fv.seed).check()
  except ValueError as e:
    raise SystemExit(f"{prog}: {e}")
  fps = sampler.config.sample.get("fps", 8.0)
  sheet = write(sampler, prompts, request, num=fv.num, seed=fv.seed, fps=fps, out=fv.out,
                out_dir=fv.out_dir)
  if fv.out and fv.pose and _lead():
    pose_flags.write_side_by_side(request.pose, sheet.first, fv.out, fps)
  return 0


def check(fv, prog: str) -> list[str]:
  """Every flag checked before a checkpoint is loaded; returns the prompts."""
  if fv.cascade is not None and (fv.config is not None or fv.workdir):
    raise SystemExit(f"{prog}: give --cascade, or --workdir (with an optional --config), not both")
  if fv.cascade is None and not fv.workdir:
    raise SystemExit(f"{prog}: give --workdir (one stage) or --cascade")
  if (fv.prompt is None) == (fv.prompts is None):
    raise SystemExit(f"{prog}: give exactly one of --prompt and --prompts")
  if fv.prompt is not None and not fv.out:
    raise SystemExit(f"{prog}: --prompt needs --out FILE.mp4")
  if fv.prompts is not None and not fv.out_dir:
    raise SystemExit(f"{prog}: --prompts needs --out_dir DIR")
  if fv.out and os.path.splitext(fv.out)[1].lower() != ".mp4":
    raise SystemExit(f"{prog}: --out {fv.out}: expected a .mp4 file name")
  if fv.num < 1:
    raise SystemExit(f"{prog}: --num {fv.num}: expected at least 1 sample per prompt")
  sampling_flags.check(fv, prog, cascade=fv.cascade is not None)
  if fv.cascade is not None and fv.pose_guidance is not None:
    raise SystemExit(f"{prog}: --pose_guidance is for one stage; a cascade takes each "
                     "stage's pose_guidance from its config")
  known_flags.check(fv)
  pose_flags.check(fv)
  prompts = [fv.prompt] if fv.prompt is not None else read_prompts(fv.prompts)
  for p in prompts:
    if not p.strip():
      raise SystemExit(f"{prog}: --prompt is empty: expected some text")
  return prompts


def load(fv):
  """The StageSampler (--workdir [--config]) or Cascade (--cascade) the flags name."""
  from imagen_video.cascade.cascade import Cascade
  from imagen_video.stage.sampler import StageSampler
  try:
    if fv.cascade is not None:
      return Cascade.load(fv.cascade)
    return StageSampler.load(fv.workdir, config=fv.config)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(str(e))


def check_lengths(sampler, prompts, *, strict: bool, prog: str) -> None:
  """A warning (or with --strict_prompts an error) per prompt the text encoder would cut."""
  stages = [r.stage for r in sampler.runs] if hasattr(sampler, "runs") else [sampler.stage]
  tokenizers = {id(s.text.tokenizer): s.text.tokenizer for s in stages if s.text.tokenizer}
  for tokenizer in tokenizers.values():
    for i, prompt in enumerate(prompts):
      n = tokenizer.length(prompt)
      if n > tokenizer.max_length:
        line = (f"prompt {i + 1} ({prompt[:40]!r}...) is {n} tokens; the text encoder reads "
                f"{tokenizer.max_length} (config.text.max_length), so the last "
                f"{n - tokenizer.max_length} are cut")
        if strict:
          raise SystemExit(f"{prog}: {line} (--strict_prompts)")
        print(f"{prog}: warning: {line}", flush=True)


def _lead() -> bool:
  import jax
  return jax.process_index() == 0


def read_prompts(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise SystemExit(f"--prompts {path}: no such file")
  with open(path) as f:
    prompts = [line.strip() for line in f if line.strip()]
  if not prompts:
    raise SystemExit(f"--prompts {path}: no prompts (one per line expected)")
  return prompts


@dataclasses.dataclass
class Sheet:
  path: str
  first: np.ndarray  # the first sample, uint8 [T, H, W, 3]


def write(sampler, prompts, request, *, num, seed, fps, out=None, out_dir=None) -> Sheet:
  """Samples every prompt `num` times through `sampler` (a StageSampler or a Cascade);
  process 0 writes mp4s, the contact sheet (a row per stage for a cascade) and samples.jsonl."""
  from imagen_video.media import contact_sheet, video_io
  lead = _lead()
  records, sheet_clips, sheet_caps, first = [], [], [], None
  rows = len(getattr(sampler, "runs", [])) > 0
  runs = getattr(sampler, "runs", None) or [sampler]
  for p_index, prompt in enumerate(prompts):
    t0 = time.time()
    r = dataclasses.replace(request, prompts=(prompt,) * num, seed=seed + p_index * num)
    marks = [len(run.timings) for run in runs]
    result = sampler.sample(r)
    clips = video_io.to_uint8(result.video)
    first = clips[0] if first is None else first
    print(f"[{p_index + 1}/{len(prompts)}] {prompt!r}: {num} sample(s) in {time.time() - t0:.1f} s",
          flush=True)
    for run, mark in zip(runs, marks):  # ms per step and MFU of each sampler run
      for timing in run.timings[mark:]:
        print(f"  sampler {run.name}: {timing.describe()}", flush=True)
    if rows:  # one sheet row per stage, first sample
      for name, video in result.stages:
        v = video_io.to_uint8(video[:1])[0]
        sheet_clips.append(v)
        sheet_caps.append(f"{prompt} [{name} {v.shape[0]}x{v.shape[1]}x{v.shape[2]}]")
    else:
      sheet_clips += list(clips)
      sheet_caps += [prompt] * num
    if not lead:
      continue
    if out:
      video_io.write_mp4(out, np.concatenate(list(clips), axis=2), fps=fps, scale=_scale(clips))
      print(f"wrote {out}")
    else:
      os.makedirs(out_dir, exist_ok=True)
      for i, clip in enumerate(clips):
        name = f"{p_index:04d}_{i:02d}.mp4"
        video_io.write_mp4(os.path.join(out_dir, name), clip, fps=fps, scale=_scale(clips))
        records.append({"prompt": prompt, "seed": int(result.seeds[i]), "sample": i, "file": name})
  sheet = os.path.splitext(out)[0] + ".png" if out else os.path.join(out_dir, "contact_sheet.png")
  if lead:
    (contact_sheet.stack_rows if rows else contact_sheet.contact_sheet)(sheet_clips, sheet_caps, sheet)
    print(f"wrote {sheet}")
    if out_dir:
      with open(os.path.join(out_dir, "samples.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
      print(f"wrote {os.path.join(out_dir, 'samples.jsonl')} ({len(records)} samples)")
  return Sheet(sheet, first)


def _scale(clips) -> int:
  """Enlarge tiny videos so players show them (at least ~128 px)."""
  return max(1, 128 // clips.shape[2])
