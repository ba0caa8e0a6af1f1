"""imagen-video sample --config CONFIG --workdir DIR --prompt TEXT --out FILE.mp4
   imagen-video sample --cascade CASCADE_CONFIG --prompt TEXT --out FILE.mp4
   ... --prompts FILE --out_dir DIR   (instead of --prompt/--out)

One stage (--config + --workdir, EMA weights of the newest checkpoint) or a
whole cascade (--cascade: every stage from its own workdir). With --prompt it
writes FILE.mp4 (the --num samples side by side) and FILE.png (contact sheet;
for a cascade one row per stage); with --prompts (one per line) one mp4 per
prompt and sample plus `samples.jsonl` (prompt, seed, file) in --out_dir,
compiling the samplers once. Guidance weights are traced: changing them never
recompiles. Only process 0 writes files.

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

import json
import os
import time

import numpy as np
from absl import flags

from imagen_video.cli import flags_util, known_flags, pose_flags


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags_util.define_config(fv, argv, name="cascade", help_string="cascade config file[:args]")
  flags.DEFINE_string("workdir", None, "training workdir with checkpoints/ (one stage)", flag_values=fv)
  flags.DEFINE_string("prompt", None, "one prompt", flag_values=fv)
  flags.DEFINE_string("prompts", None, "file with one prompt per line", flag_values=fv)
  flags.DEFINE_string("out", None, "output mp4 (with --prompt)", flag_values=fv)
  flags.DEFINE_string("out_dir", None, "output folder (with --prompts)", flag_values=fv)
  flags.DEFINE_integer("num", 1, "samples per prompt", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "random seed", flag_values=fv)
  flags.DEFINE_integer("steps", None, "sampling steps (one stage; default config.sample.steps)", flag_values=fv)
  flags.DEFINE_float("guidance", None, "guidance weight (one stage; default config.sample.guidance)",
                     flag_values=fv)
  flags.DEFINE_string("sampler", None, "ddim | ancestral | dpm++2m | stochastic "
                      "(one stage; default config.sample.sampler)", flag_values=fv)
  known_flags.define(fv)
  pose_flags.define(fv)
  flags_util.parse(fv, argv, __doc__)
  if (fv.config is None) == (fv.cascade is None):
    raise SystemExit(f"{argv[0]}: give --config (with --workdir) or --cascade")
  if fv.config is not None and not fv.workdir:
    raise SystemExit(f"{argv[0]}: --config needs --workdir")
  if bool(fv.prompt) == bool(fv.prompts):
    raise SystemExit(f"{argv[0]}: give exactly one of --prompt and --prompts")
  if fv.prompt and not fv.out:
    raise SystemExit(f"{argv[0]}: --prompt needs --out FILE.mp4")
  if fv.prompts and not fv.out_dir:
    raise SystemExit(f"{argv[0]}: --prompts needs --out_dir DIR")
  prompts = [fv.prompt] if fv.prompt else read_prompts(fv.prompts)
  if fv.cascade is not None:
    generate, fps, names = cascade_sampler(fv.cascade)
  else:
    s = fv.config.sample
    generate, fps, _ = stage_sampler(fv.config, fv.workdir, steps=fv.steps or s.steps,
                                     guidance=s.guidance if fv.guidance is None else fv.guidance,
                                     sampler=fv.sampler or s.sampler)
    names = None
  if fv.cascade is not None and fv.pose_guidance is not None:
    raise SystemExit(f"{argv[0]}: --pose_guidance is for one stage; a cascade takes each "
                     "stage's pose_guidance from its config")
  posed = pose_flags.posed(generate, fv)
  generate = known_flags.conditioned(posed, fv)
  write(generate, prompts, num=fv.num, seed=fv.seed, fps=fps, out=fv.out, out_dir=fv.out_dir,
        stage_names=names)
  if fv.out and jax_lead():
    pose_flags.write_side_by_side(posed, fv.out, fps)
  return 0


def jax_lead() -> bool:
  import jax
  return jax.process_index() == 0


def read_prompts(path: str) -> list[str]:
  with open(path) as f:
    prompts = [line.strip() for line in f if line.strip()]
  if not prompts:
    raise SystemExit(f"{path}: no prompts (one per line expected)")
  return prompts


def stage_sampler(config, workdir, *, steps, guidance, sampler, step=None):
  """generate(prompts, seed, **known_args) -> (uint8 [B,T,H,W,3], None), fps, the checkpoint
  step; known_args: known, conditioning, recon_weight, pose_guidance (see Stage.sample) and
  pose (keypoints, visibility), drawn as the stage's pose maps."""
  import jax
  from imagen_video.diffusion import samplers
  from imagen_video.media import video_io
  from imagen_video.train import trainer
  stage, ema, step = trainer.load_for_sampling(config, workdir, step=step)
  text_params = ema.get("text", stage.text.params)

  def generate(prompts, seed, pose=None, **known_args):
    if pose is not None:
      from imagen_video.stage import pose_input
      known_args["pose_maps"] = pose_input.pose_maps(*pose, stage.output_shape(len(prompts)))
    now = samplers.sdedit_steps(steps, known_args.get("start", 1.0))  # a refresh: fewer steps
    video = stage.sample(ema["unet"], text_params, prompts, jax.random.key(seed), steps=now,
                         sampler=sampler, guidance=guidance, **known_args)
    return video_io.to_uint8(np.asarray(video)), None
  generate.output_shape = stage.output_shape
  return generate, config.sample.get("fps", 8.0), step


def cascade_sampler(cascade_config):
  """generate(prompts, seed, **known_args) -> (final uint8 video, every stage's output), fps,
  stage names."""
  from imagen_video.cascade.cascade import Cascade
  cascade = Cascade.load(cascade_config)

  def generate(prompts, seed, **known_args):
    return cascade.sample(prompts, seed=seed, return_stages=True, **known_args)
  generate.output_shape = cascade.runs[-1].stage.output_shape
  last = cascade.runs[-1].stage.config
  return generate, last.sample.get("fps", 8.0), [r.name for r in cascade.runs]


def write(generate, prompts, *, num, seed, fps, out=None, out_dir=None, stage_names=None):
  """Samples every prompt `num` times; process 0 writes mp4s, sheet(s) and samples.jsonl."""
  import jax
  from imagen_video.media import contact_sheet, video_io
  lead = jax.process_index() == 0
  records, sheet_clips, sheet_caps = [], [], []
  for p_index, prompt in enumerate(prompts):
    t0 = time.time()
    clips, stages = generate([prompt] * num, seed + p_index)
    print(f"[{p_index + 1}/{len(prompts)}] {prompt!r}: {num} sample(s) in {time.time() - t0:.1f} s",
          flush=True)
    if stages is not None:  # one sheet row per stage, first sample
      sheet_clips += [s[0] for s in stages]
      sheet_caps += [f"{prompt} [{name} {s.shape[1]}x{s.shape[2]}x{s.shape[3]}]"
                     for name, s in zip(stage_names, stages)]
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
        records.append({"prompt": prompt, "seed": seed + p_index, "sample": i, "file": name})
  if lead:
    sheet = os.path.splitext(out)[0] + ".png" if out else os.path.join(out_dir, "contact_sheet.png")
    if stage_names:
      contact_sheet.stack_rows(sheet_clips, sheet_caps, sheet)
    else:
      contact_sheet.contact_sheet(sheet_clips, sheet_caps, sheet)
    print(f"wrote {sheet}")
    if out_dir:
      with open(os.path.join(out_dir, "samples.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
      print(f"wrote {os.path.join(out_dir, 'samples.jsonl')} ({len(records)} samples)")
  return sheet_clips


def _scale(clips) -> int:
  """Enlarge tiny videos so players show them (at least ~128 px)."""
  return max(1, 128 // clips.shape[2])
