"""imagen-video eval --config CONFIG --workdir DIR [--metric caption|sr_psnr] [--num 4] [--out_dir DIR]
   imagen-video eval --cascade CASCADE_CONFIG [--metric caption|fvd] [--num 2] [--out_dir DIR]

caption: samples all 28 color x direction prompts of `moving_shapes` (--num
each, shapes cycling) with the stage's EMA weights and reports color,
direction and both-together accuracy read from the pixels; writes
caption_eval.md (tables) and caption_eval.png (contact sheet) to --out_dir.

sr_psnr: for a TSR/SSR stage, samples the first --num clips of the test split
(--split validation: a split for choosing settings, where the dataset has one)
from their low-res inputs (default augmentation level) and compares PSNR with
bicubic (SSR) or linear frame blending (TSR); writes sr_psnr.md/.json/.png.
--sweep_steps 16,8,4,2,1 scores each step count on the same clips and names the best
for single draws (sr_psnr_steps.md/.json/.png: delta against steps).

conditional: for a stage, image-to-video, interpolation, prediction and inpainting
of the first --num test clips by replacement and by reconstruction guidance, PSNR/SSIM
against the truth and a classical baseline each; on a wrap moving_shapes dataset also
autoregressive extension to --extend x the clip length (trajectory error, the shape's
aligned PSNR; --refresh T re-denoises each window from time T, unless that takes more than
--refresh_floor of its contrast away; --first picks the clips);
writes conditional.md/.json/.png, extension.png, extension_error.png. --tasks picks some.

pose: for a pose-guided stage or cascade (configs/cascade_pose_tiny.py), samples the
captions of the first --num test clips with their keypoints and without, and scores
PSNR/SSIM against the clips and the pose error of a keypoint detector (--detector, trained
and cached there if missing) on the samples; writes pose_eval.md/.json/.png.

fvd: samples the captions of the first --num test clips (base stage or whole
cascade) and computes FVD (Kinetics-400 I3D) against those held-out clips;
writes fvd.md/.json/.png. Use --num 64 or more: FVD is biased at small counts.
"""
from __future__ import annotations

import os
import time

from absl import flags

from imagen_video.cli import flags_util
from imagen_video.eval import report as report_lib


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags_util.define_config(fv, argv, name="cascade", help_string="cascade config file[:args]")
  flags.DEFINE_string("workdir", None, "training workdir with checkpoints/", flag_values=fv)
  flags.DEFINE_enum("metric", "caption", ["caption", "sr_psnr", "text_probe", "fvd", "conditional",
                                          "pose"],
                    "what to measure (text_probe: x0 error with the direction word changed)",
                    flag_values=fv)
  flags.DEFINE_integer("num", 4, "samples per prompt (caption); test clips (sr_psnr, text_probe, fvd)",
                       flag_values=fv)
  flags.DEFINE_integer("seed", 0, "random seed", flag_values=fv)
  flags.DEFINE_integer("batch", 28, "prompts sampled together (caption; lower it to save memory)",
                       flag_values=fv)
  flags.DEFINE_integer("steps", None, "sampling steps (default config.sample.steps)", flag_values=fv)
  flags.DEFINE_float("guidance", None, "guidance weight (default config.sample.guidance)", flag_values=fv)
  flags.DEFINE_string("sampler", None, "ddim | ancestral | dpm++2m | stochastic (one stage; default "
                      "config.sample.sampler)", flag_values=fv)
  flags.DEFINE_string("out_dir", None, "where to write the report (default WORKDIR/eval)", flag_values=fv)
  flags.DEFINE_integer("step", None, "checkpoint step to evaluate (default the newest)", flag_values=fv)
  flags.DEFINE_integer("samples", 1, "sr_psnr: draws per clip; > 1 also scores their average "
                       "(the posterior-mean estimate)", flag_values=fv)
  flags.DEFINE_string("sweep_steps", None, "sr_psnr: comma-separated step counts to score in turn "
                      "(e.g. 16,8,4,2,1; writes sr_psnr_steps.md/.json/.png and names the best)",
                      flag_values=fv)
  flags.DEFINE_string("split", "test", "sr_psnr: held-out split to score (validation where the "
                      "dataset has one: for choosing sampler settings)", flag_values=fv)
  flags.DEFINE_string("tasks", "i2v,interpolation,prediction,inpainting,extension",
                      "conditional: which tasks", flag_values=fv)
  flags.DEFINE_integer("extend", 4, "conditional: extension length in clip lengths", flag_values=fv)
  flags.DEFINE_integer("context", None, "conditional: extension's context frames per window "
                       "(default three quarters of a window)", flag_values=fv)
  flags.DEFINE_float("recon_weight", None, "conditional: reconstruction guidance weight "
                     "(default config.sample.recon_weight)", flag_values=fv)
  flags.DEFINE_float("refresh", 0.0, "conditional: extension re-denoises each window from this "
                     "time in (0, 1) before keeping it (SDEdit; 0 = off)", flag_values=fv)
  from imagen_video.stage.known import REFRESH_FLOOR
  flags.DEFINE_float("refresh_floor", REFRESH_FLOOR, "conditional: a window whose refresh leaves less than "
                     "this share of its contrast is kept un-refreshed (0: every refresh kept)",
                     flag_values=fv)
  flags.DEFINE_integer("first", 0, "conditional: extension's first test clip (choose settings on "
                       "clips an evaluation from clip 0 does not use)", flag_values=fv)
  flags.DEFINE_string("detector", None, "pose: keypoint detector file (default OUT_DIR/"
                      "pose_detector_HxW.npz, trained there if missing)", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.cascade is not None:
    if fv.metric not in ("caption", "fvd", "pose") or fv.config is not None or fv.step is not None \
        or fv.sampler:
      raise SystemExit(f"{argv[0]}: --cascade goes with --metric caption, fvd or pose and no "
                       "--config, --step or --sampler (the cascade config sets each stage's)")
    if fv.metric == "pose":
      from imagen_video.cascade.cascade import Cascade
      from imagen_video.eval import pose_eval
      cascade = Cascade.load(fv.cascade)
      pose_eval.evaluate(lambda prompts, seed, pose=None: (cascade.sample(prompts, seed=seed, pose=pose), None),
                         cascade.runs[-1].stage.config, num=fv.num, seed=fv.seed, batch=fv.batch,
                         out_dir=fv.out_dir or "cascade_eval", detector_path=fv.detector,
                         label="cascade " + " -> ".join(r.name for r in cascade.runs))
      return 0
    if fv.metric == "fvd":
      from imagen_video.cascade.cascade import Cascade
      cascade = Cascade.load(fv.cascade)
      fvd_eval(lambda prompts, seed: cascade.sample(prompts, seed=seed), cascade.runs[-1].stage.config,
               num=fv.num, seed=fv.seed, batch=fv.batch, out_dir=fv.out_dir or "cascade_eval",
               label="cascade " + " -> ".join(r.name for r in cascade.runs))
      return 0
    from imagen_video.cli import sample
    generate, _, names = sample.cascade_sampler(fv.cascade)
    caption_eval(generate, num=fv.num, seed=fv.seed, out_dir=fv.out_dir or "cascade_eval",
                 batch=fv.batch, stage_names=names,
                 label="cascade " + " -> ".join(names) + " (final output)")
    return 0
  if fv.config is None or not fv.workdir:
    raise SystemExit(f"{argv[0]}: --config and --workdir (or --cascade) are required")
  s = fv.config.sample
  if fv.sampler:
    from imagen_video.diffusion import samplers
    if fv.sampler not in samplers.SAMPLERS:
      raise SystemExit(f"{argv[0]}: --sampler {fv.sampler!r}: expected one of {samplers.SAMPLERS}")
    s.sampler = fv.sampler
  out_dir = fv.out_dir or os.path.join(fv.workdir, "eval")
  if fv.metric == "sr_psnr" and fv.sweep_steps:
    if fv.steps:
      raise SystemExit(f"{argv[0]}: --sweep_steps replaces --steps; give one of them")
    sr_psnr_sweep(fv.config, fv.workdir, [int(v) for v in fv.sweep_steps.split(",")], num=fv.num,
                  seed=fv.seed, guidance=fv.guidance, out_dir=out_dir, step=fv.step,
                  samples=fv.samples, split=fv.split)
    return 0
  if fv.metric == "sr_psnr":
    sr_psnr_eval(fv.config, fv.workdir, num=fv.num, seed=fv.seed, steps=fv.steps,
                 guidance=fv.guidance, out_dir=out_dir, step=fv.step, samples=fv.samples,
                 split=fv.split)
    return 0
  if fv.metric == "text_probe":
    text_probe_eval(fv.config, fv.workdir, num=fv.num, seed=fv.seed, out_dir=out_dir, step=fv.step)
    return 0
  if fv.metric == "conditional":
    conditional_eval(fv.config, fv.workdir, num=fv.num, seed=fv.seed, steps=fv.steps or s.steps,
                     guidance=s.guidance if fv.guidance is None else fv.guidance, out_dir=out_dir,
                     step=fv.step, tasks=fv.tasks.split(","), extend=fv.extend,
                     context=fv.context, recon_weight=fv.recon_weight, refresh=fv.refresh,
                     refresh_floor=fv.refresh_floor, first=fv.first)
    return 0
  from imagen_video.cli import sample
  steps, sampler = fv.steps or s.steps, s.sampler
  guidance = s.guidance if fv.guidance is None else fv.guidance
  generate, _, step = sample.stage_sampler(fv.config, fv.workdir, steps=steps, guidance=guidance,
                                           sampler=sampler, step=fv.step)
  if fv.metric == "pose":
    from imagen_video.eval import pose_eval
    pose_eval.evaluate(generate, fv.config, num=fv.num, seed=fv.seed, batch=fv.batch, out_dir=out_dir,
                       detector_path=fv.detector,
                       label=f"{fv.workdir} step {step}, EMA, {sampler} {steps} steps, guidance {guidance:g}")
    return 0
  if fv.metric == "fvd":
    fvd_eval(lambda prompts, seed: generate(prompts, seed)[0], fv.config, num=fv.num, seed=fv.seed,
             batch=fv.batch, out_dir=out_dir,
             label=f"{fv.workdir} step {step}, EMA, {sampler} {steps} steps, guidance {guidance:g}")
    return 0
  caption_eval(generate, num=fv.num, seed=fv.seed, out_dir=out_dir, batch=fv.batch,
               label=f"{fv.workdir} step {step}, EMA, {sampler} {steps} steps, guidance {guidance:g}")
  return 0


def conditional_eval(config, workdir, *, num, seed, steps, guidance, out_dir, step=None,
                     tasks=(), extend=4, context=None, recon_weight=None, refresh=0.0,
                     refresh_floor, first=0) -> dict:
  from imagen_video.cli import known_flags
  from imagen_video.eval import conditional, sr_psnr
  from imagen_video.train import trainer
  known_flags.check_refresh(refresh)
  if not 0.0 <= refresh_floor <= 1.0:
    raise SystemExit(f"--refresh_floor {refresh_floor}: expected a share in [0, 1]")
  unknown = set(tasks) - set(conditional.TASKS) - {"extension"}
  if unknown:
    raise SystemExit(f"--tasks: unknown {sorted(unknown)}; expected some of "
                     f"{list(conditional.TASKS) + ['extension']}")
  stage, ema, step = trainer.load_for_sampling(config, workdir, step=step)
  sample = conditional.stage_sampler(stage, ema, steps=steps, guidance=guidance,
                                     sampler=config.sample.sampler, seed=seed, recon_weight=recon_weight)
  picked = [t for t in conditional.TASKS if t in tasks]
  result = conditional.evaluate_tasks(sample, sr_psnr.test_clips(config, num), tasks=picked) if picked else None
  ext = None
  if "extension" in tasks:
    if config.data.builder.get("wrap"):
      clips = conditional.extension_clips(config.data.builder, num, extend, first=first)
      ext = conditional.extension(sample, clips, window=config.data.builder.frames, context=context,
                                  refresh=refresh, refresh_floor=refresh_floor)
    else:
      print("[conditional] extension skipped: it needs data.builder.wrap=True (a wrap-around "
            "moving_shapes dataset, where the continued motion has a ground truth)")
  label = (f"{workdir} step {step}, {config.sample.sampler} {steps} steps, guidance {guidance:g}, "
           f"reconstruction weight {recon_weight if recon_weight is not None else 'default'}, "
           f"{num} test clips" + (f" from {first}" if first else "")
           + (f", extension refreshed from t = {refresh:g} (floor {refresh_floor:g})" if refresh else ""))
  conditional.write_report(out_dir, result, ext, label)
  print(f"wrote {out_dir}/conditional.md")
  return {"tasks": result, "extension": ext}


def sr_psnr_eval(config, workdir, *, num, seed=0, steps=None, guidance=None, out_dir,
                 step=None, samples=1, split="test") -> dict:
  """sr_psnr.evaluate, printed and written as sr_psnr.md / .json / .png in out_dir."""
  from imagen_video.eval import sr_psnr
  name = os.path.basename(os.path.normpath(workdir))
  result = sr_psnr.evaluate(config, workdir, num=num, seed=seed, steps=steps, guidance=guidance,
                            name=name, step=step, samples=samples, split=split)
  report = sr_psnr.table(result)
  print(f"sr_psnr: {result['sampler']} {result['steps']} steps, guidance {result['guidance']}, "
        f"aug_level {result['aug_level']}, {result['seconds']:.0f} s\n{report}")
  header = (f"{result['sampler']} {result['steps']} steps; guidance {result['guidance']}; "
            f"aug_level {result['aug_level']}")
  if "ssim_model" in result:
    header += (f"; SSIM per frame (first draw): model {result['ssim_model']:.4f}, "
               f"{result['baseline']} {result['ssim_baseline']:.4f}")
  if report_lib.write(out_dir, "sr_psnr", f"{header}\n\n{report}", sr_psnr.summary(result)):
    sr_psnr.contact_sheet(result, os.path.join(out_dir, "sr_psnr.png"))
  return result


def sr_psnr_sweep(config, workdir, steps_list, *, num, seed=0, guidance=None, out_dir, step=None,
                  samples=1, split="test") -> list:
  """sr_psnr.evaluate_steps (same clips and seeds, loaded once), as a table and a plot of the
  delta against steps in out_dir/sr_psnr_steps.*; prints the best count for single draws."""
  from imagen_video.eval import sr_psnr
  name = os.path.basename(os.path.normpath(workdir))
  results = []
  for i, r in enumerate(sr_psnr.evaluate_steps(config, workdir, steps_list, num=num, seed=seed,
                                               guidance=guidance, name=name, step=step,
                                               samples=samples, split=split)):
    results.append(sr_psnr.summary(r))
    print(f"[sr_psnr sweep] {i + 1}/{len(steps_list)}: {r['steps']} steps, delta per draw "
          f"{r['delta']:+.2f} ± {r['delta_se']:.2f} dB ({r['seconds']:.0f} s)", flush=True)
  best = sr_psnr.best_steps(results)
  r = results[0]
  header = (f"{name} step {r['step']}, {num} {r['dataset']} clips, {r['sampler']}, guidance "
            f"{r['guidance']}, aug_level {r['aug_level']}, vs {r['baseline']}; best for one draw: "
            f"{best} steps")
  report = f"{header}\n\n{sr_psnr.steps_table(results)}"
  print(report)
  if report_lib.write(out_dir, "sr_psnr_steps", report, {"best_steps": best, "results": results}):
    sr_psnr.steps_plot(results, os.path.join(out_dir, "sr_psnr_steps.png"))
  return results


def fvd_eval(generate, config, *, num, seed, batch, out_dir, label) -> dict:
  """FVD of `generate` on the captions of `config`'s first `num` test clips against those
  clips; printed and written as fvd.md / .json / .png (generated | held-out) in out_dir."""
  from imagen_video.eval import fvd, sr_psnr
  from imagen_video.media import contact_sheet, video_io
  clips = sr_psnr.test_clips(config, num)
  real = video_io.to_uint8(clips["video"], (0.0, 1.0))
  result = fvd.evaluate(generate, real, clips["caption"], batch=batch, seed=seed)
  report = f"FVD (Kinetics-400 I3D) against held-out {config.data.name} test clips\n\n" + \
      fvd.table([(label, result)])
  print(report)
  summary = {"label": label, **{k: v for k, v in result.items() if k != "examples"}}
  if report_lib.write(out_dir, "fvd", report, summary):
    shown = len(result["examples"])
    contact_sheet.contact_sheet(
        list(result["examples"]) + list(real[:shown]),
        [f"generated: {c}" for c in clips["caption"][:shown]] + ["held-out clip"] * shown,
        os.path.join(out_dir, "fvd.png"), title=f"{label}: FVD {result['fvd']:.1f}")
  return result


def text_probe_eval(config, workdir, *, num, seed, out_dir, step=None) -> dict:
  """`text_probe` on `num` held-out moving_shapes clips (true / flipped / rotated direction, null)."""
  from imagen_video.eval import sr_psnr, text_probe
  from imagen_video.train import trainer
  stage, ema, step = trainer.load_for_sampling(config, workdir, step=step)
  clips = sr_psnr.test_clips(stage.config, num)  # the prepared test split, like sr_psnr
  errors = text_probe.x0_errors(stage, ema["unet"], ema.get("text", stage.text.params),
                                clips["video"] * 2 - 1, text_probe.direction_variants(clips["caption"]),
                                seed=seed)
  report = (f"text probe: {workdir} step {step}, EMA; x0-MSE on {num} test clips\n\n"
            + text_probe.table(errors))
  print(report)
  report_lib.write(out_dir, "text_probe", report)
  return errors


def caption_eval(generate, *, num, seed, out_dir, label, batch=28, stage_names=None) -> dict:
  """The caption check of `generate(prompts, seed) -> (uint8 videos, stage outputs or None)`
  (one stage from sample.stage_sampler or a whole cascade from sample.cascade_sampler, whose
  `stage_names` add a per-stage table); `label` heads the report."""
  from imagen_video.eval import prompt_following
  from imagen_video.media import contact_sheet
  calls = iter(range(10 ** 6))
  per_stage = []  # a cascade's every stage output, per call

  def sample_fn(prompts):
    final, stages = generate(prompts, seed * 10 ** 6 + next(calls))
    if stages is not None and stage_names:
      per_stage.append(stages)
    return final

  t0 = time.time()
  prompts = prompt_following.grammar_prompts(num)
  result = prompt_following.evaluate(sample_fn, prompts, batch=batch)
  seconds = time.time() - t0
  report = prompt_following.table(result)
  if per_stage:  # where along the cascade the prompt is lost
    report += "\n\n" + prompt_following.stage_table(stage_names, per_stage, prompts)
  shape = "x".join(map(str, result["videos"][0].shape[:3]))
  print(f"caption check: {label}; {len(prompts)} samples of {shape}, {seconds:.0f} s\n{report}")
  summary = {"label": label, "accuracy": result["accuracy"], "samples": len(prompts),
             "shape": shape, "seconds": seconds}
  if report_lib.write(out_dir, "caption_eval",
                   f"{label}; {len(prompts)} samples of {shape} (frames x height x width)\n\n{report}",
                   summary):
    first = [result["videos"][i] for i in range(0, len(prompts), num)]  # one per prompt
    caps = [f"{p} -> {r['pred_color']}/{r['pred_direction']}"
            for p, r in zip(prompts[::num], result["rows"][::num])]
    contact_sheet.contact_sheet(first, caps, os.path.join(out_dir, "caption_eval.png"),
                                title=f"{label}: color+direction {result['accuracy']['color_direction']:.0%}")
  return result

