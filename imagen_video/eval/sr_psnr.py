"""PSNR of a super-resolution stage against its classical baseline on held-out clips.

For a TSR or SSR stage: the first `num` clips of the test split, their low-res
input from the dataset, sampled with the config's sampler/steps/guidance and
its default augmentation level (EMA weights, text prompt = the clip caption).
Baselines: bicubic spatial upsampling (SSR); linear blending of the low-fps
frames (TSR), placed where the dataset takes them: low frame i is high frame
i*k, so high frame j blends low frames floor(j/k) and floor(j/k)+1, and the
last k-1 frames (after the last low frame) hold it.

`samples=K > 1` draws K samples per clip and also scores their average, an
estimate of the posterior mean. Why both: an exact posterior sample's expected
squared error is the MMSE plus the posterior variance (about twice the MMSE), so a
sample beats the baseline only where the model explains more than half of the
baseline's error, while the average shows how good an estimator the stage is.
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from imagen_video.eval import registry, video_metrics
from imagen_video.stage import conditioning

BASELINES = {"ssr": "bicubic", "tsr": "linear blend"}


def psnr(a, b) -> np.ndarray:
  """PSNR in dB of videos in [0, 1], one per leading index: [N, T, H, W, C] -> [N]."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"psnr: shapes {a.shape} and {b.shape} differ; expected equal")
  mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
  with np.errstate(divide="ignore"):
    return 10 * np.log10(1.0 / mse)


def bicubic_upsample(low, height: int, width: int) -> np.ndarray:
  """[N, T, h, w, C] in [0, 1] -> [N, T, height, width, C], bicubic, clipped to [0, 1]."""
  low = np.asarray(low, np.float32)
  up = jax.image.resize(low, low.shape[:2] + (height, width, low.shape[-1]), method="bicubic")
  return np.clip(np.asarray(up), 0.0, 1.0)


def linear_blend(low, frames: int) -> np.ndarray:
  """[N, t, ...] -> [N, frames, ...]: low frame i at high frame i * frames/t, linear between."""
  low = np.asarray(low, np.float32)
  t = low.shape[1]
  if frames % t:
    raise ValueError(f"linear_blend: {frames} frames is not a multiple of the {t} low-res frames")
  pos = np.arange(frames) * (t / frames)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, t - 1)
  f = (pos - lo).reshape((1, frames) + (1,) * (low.ndim - 2))
  return (1 - f) * low[:, lo] + f * low[:, hi]


def baseline(kind: str, low, shape) -> np.ndarray:
  """The classical upsampling of `low` ([N, t, h, w, C] in [0, 1]) to shape [N, T, H, W, C]."""
  if kind == "ssr":
    return bicubic_upsample(low, shape[2], shape[3])
  if kind == "tsr":
    return linear_blend(low, shape[1])
  raise ValueError(f"config.stage.kind={kind!r}: sr_psnr needs 'tsr' or 'ssr'")


def back_projected(config, base, low) -> np.ndarray:
  """The baseline given the stage's own `stage.back_projection` rounds (clipped like the
  stage's output): the classical answer with the same post-processing as the model."""
  out = conditioning.back_project(config, np.asarray(base, np.float32) * 2 - 1,
                                  np.asarray(low, np.float32) * 2 - 1)
  return np.clip((np.asarray(out) + 1) / 2, 0.0, 1.0)


def evaluate_steps(sampler, steps_list, *, num: int = 8, seed: int = 0, chunk: int = 8,
                   samples: int = 1, split: str = "test"):
  """PSNR of a `StageSampler` (TSR/SSR) on `num` held-out clips of `split` (`samples` draws
  each) at each step count in turn (None: its default), on the same clips and seeds; the
  clips and baselines are loaded and scored once. Yields one result per step count: model
  (per draw, averaged), baseline, baseline + back-projection and, for samples > 1, the
  draws' average."""
  from imagen_video.data import held_out
  config = sampler.config
  if samples < 1:
    raise ValueError(f"samples={samples}: expected at least 1 draw per clip")
  kind = conditioning.kind(config)
  if kind not in BASELINES:
    raise ValueError(f"config.stage.kind={kind!r}: sr_psnr needs a 'tsr' or 'ssr' stage")
  clips = held_out.clips(config, num, split)
  base = baseline(kind, clips["low"], clips["video"].shape)
  base_bp = back_projected(config, base, clips["low"])
  pb, pbp = psnr(base, clips["video"]), psnr(base_bp, clips["video"])
  rounds = int(config.stage.get("back_projection", 0))
  ssim_base = None
  for steps in steps_list:
    steps = int(steps or sampler.defaults.steps)
    t0 = time.time()
    draws = [upsample(sampler, clips["low"], clips["caption"], seed=seed + 1_000_003 * k,
                      steps=steps, chunk=chunk) for k in range(samples)]
    model = draws[0]
    pm = np.mean([psnr(d, clips["video"]) for d in draws], axis=0)
    extra = {}
    if samples > 1:
      pmean = psnr(np.mean(draws, axis=0), clips["video"])
      extra = {"psnr_mean": {"mean": float(pmean.mean()), "std": float(pmean.std()),
                             "per_clip": pmean.tolist()},
               **{k + "_mean": v for k, v in paired(pmean, pb).items()}}
    if min(model.shape[2:4]) > 10:  # SSIM's 11-tap window: per frame, averaged
      if ssim_base is None:
        ssim_base = float(video_metrics.ssim_per_frame(base, clips["video"]).mean())
      extra["ssim_model"] = float(video_metrics.ssim_per_frame(model, clips["video"]).mean())
      extra["ssim_baseline"] = ssim_base
    yield {**extra, "samples": samples,
           "stage": sampler.name, "kind": kind, "dataset": f"{config.data.name} {split}", "num": num,
           "step": int(sampler.step), "sampler": sampler.defaults.sampler, "steps": steps,
           "guidance": float(sampler.defaults.guidance),
           "aug_level": float(sampler.defaults.aug_level if sampler.defaults.aug_level is not None
                              else config.stage.aug_level),
           "baseline": BASELINES[kind], "back_projection": rounds,
           "psnr_model": {"mean": float(pm.mean()), "std": float(pm.std()), "per_clip": pm.tolist()},
           "psnr_baseline": {"mean": float(pb.mean()), "std": float(pb.std()), "per_clip": pb.tolist()},
           "psnr_baseline_bp": {"mean": float(pbp.mean()), "std": float(pbp.std()),
                                "per_clip": pbp.tolist()},
           **paired(pm, pb), **{k + "_bp": v for k, v in paired(pm, pbp).items()},
           "seconds": time.time() - t0,
           "videos": {"low": clips["low"], "baseline": base, "model": model, "truth": clips["video"]},
           "captions": clips["caption"]}


def upsample(sampler, low, captions, *, seed, steps=None, chunk=8) -> np.ndarray:
  """The SR stage applied to `low` ([N, t, h, w, C] in [0, 1]) in chunks of `chunk`, clip i
  with seed + i -> [N, T, H, W, C] in [0, 1]."""
  from imagen_video.stage.sampler import Request
  outs = []
  for i in range(0, len(low), chunk):
    part = np.asarray(low[i:i + chunk], np.float32)
    r = Request(prompts=tuple(captions[i:i + chunk]), seed=seed + i, steps=steps)
    outs.append(np.clip((sampler.draw(r, low_res=part * 2 - 1) + 1) / 2, 0, 1))
  return np.concatenate(outs)


def paired(model, base) -> dict:
  """Mean per-clip PSNR difference, its standard error and the clips the model wins: the
  clips' spread is mostly shared by both (hard clips are hard for both), so the paired
  difference is what tells a win from noise."""
  d = np.asarray(model) - np.asarray(base)
  se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
  return {"delta": float(d.mean()), "delta_se": se, "wins": int((d > 0).sum())}


def table(result: dict) -> str:
  """Markdown table of one (or a list of) `evaluate_steps` results: the model against the
  classical baseline, and against that baseline given the stage's back-projection."""
  rows = result if isinstance(result, list) else [result]
  multi = any(r.get("samples", 1) > 1 for r in rows)
  head = ("| stage | dataset | clips | PSNR model (dB) | PSNR baseline (dB) | "
          "delta (dB) ± paired SE, clips won | baseline + back-projection (dB) | delta vs it |")
  lines = [head + (" draws | PSNR of their mean (dB) | its delta (dB) |" if multi else ""),
           "|---|---|---|---|---|---|---|---|" + ("---|---|---|" if multi else "")]
  for r in rows:
    m, b, bp = r["psnr_model"], r["psnr_baseline"], r["psnr_baseline_bp"]
    line = (f"| {r['stage']} ({r['kind']}, step {r['step']}) | {r['dataset']} | {r['num']} | "
            f"{m['mean']:.2f} ± {m['std']:.2f} | {b['mean']:.2f} ± {b['std']:.2f} "
            f"({r['baseline']}) | {r['delta']:+.2f} ± {r['delta_se']:.2f}, wins {r['wins']}/{r['num']} | "
            f"{bp['mean']:.2f} ({r['back_projection']} rounds) | {r['delta_bp']:+.2f} ± "
            f"{r['delta_se_bp']:.2f}, wins {r['wins_bp']}/{r['num']} |")
    if multi:
      k = r.get("samples", 1)
      line += (f" {k} | {r['psnr_mean']['mean']:.2f} ± {r['psnr_mean']['std']:.2f} | "
               f"{r['delta_mean']:+.2f} ± {r['delta_se_mean']:.2f}, wins {r['wins_mean']}/{r['num']} |"
               if k > 1 else f" {k} | | |")
    lines.append(line)
  return "\n".join(lines)


def contact_sheet(result: dict, path: str, clips: int = 3) -> np.ndarray:
  """Rows per clip: low-res input | baseline | model | ground truth."""
  from imagen_video.media import contact_sheet as sheet
  v = result["videos"]
  rows, caps = [], []
  for i in range(min(clips, result["num"])):
    pm, pb = result["psnr_model"]["per_clip"][i], result["psnr_baseline"]["per_clip"][i]
    rows += [v["low"][i], v["baseline"][i], v["model"][i], v["truth"][i]]
    caps += [f"{result['captions'][i]}: low-res input {'x'.join(map(str, v['low'][i].shape[:3]))}",
             f"{result['baseline']} {pb:.2f} dB", f"model {pm:.2f} dB", "ground truth"]
  title = (f"{result['stage']} step {result['step']}: model {result['psnr_model']['mean']:.2f} dB vs "
           f"{result['baseline']} {result['psnr_baseline']['mean']:.2f} dB on {result['num']} clips")
  return sheet.stack_rows(rows, caps, path, title=title)


def summary(result: dict) -> dict:
  """`result` without the videos (for JSON)."""
  return {k: v for k, v in result.items() if k != "videos"}


def best_steps(results: list) -> int:
  """The step count whose single draws beat the baseline by the most (mean paired delta)."""
  return int(max(results, key=lambda r: r["delta"])["steps"])


def steps_table(results: list) -> str:
  """Markdown: one row per step count of a sweep (same stage, clips and split)."""
  lines = ["| steps | PSNR per draw (dB) | delta per draw ± paired SE, clips won | "
           "delta of the draws' mean |", "|---|---|---|---|"]
  for r in sorted(results, key=lambda r: -r["steps"]):
    mean = (f"{r['delta_mean']:+.2f} ± {r['delta_se_mean']:.2f} ({r['samples']} draws)"
            if "delta_mean" in r else "")
    lines.append(f"| {r['steps']} | {r['psnr_model']['mean']:.2f} | {r['delta']:+.2f} ± "
                 f"{r['delta_se']:.2f}, {r['wins']}/{r['num']} | {mean} |")
  return "\n".join(lines)


def steps_plot(results: list, path: str) -> None:
  """Delta against the baseline (per draw, ± paired SE; and the draws' mean) vs sampling steps."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rs = sorted(results, key=lambda r: r["steps"])
  x = [r["steps"] for r in rs]
  fig, ax = plt.subplots(figsize=(5, 3.4))
  ax.errorbar(x, [r["delta"] for r in rs], [r["delta_se"] for r in rs], marker="o", capsize=3,
              label="one draw")
  if all("delta_mean" in r for r in rs):
    ax.errorbar(x, [r["delta_mean"] for r in rs], [r["delta_se_mean"] for r in rs], marker="s",
                capsize=3, ls="--", label=f"mean of {rs[0]['samples']} draws")
  ax.axhline(0, color="grey", lw=0.8)
  ax.set_xscale("log", base=2)
  ax.set_xticks(x, [str(v) for v in x])
  r = rs[0]
  ax.set(xlabel=f"{r['sampler']} steps", ylabel=f"PSNR minus {r['baseline']} (dB)",
         title=f"{r['stage']} step {r['step']}, {r['num']} {r['dataset']} clips")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


@registry.register("sr_psnr")
@dataclasses.dataclass
class SRPSNR(registry.Evaluator):
  """A TSR/SSR stage on held-out low-res inputs against bicubic (SSR) or frame blending (TSR),
  with and without the stage's back-projection. Writes sr_psnr.md/.json/.png; with
  `sweep_steps` one row per step count (sr_psnr_steps.md/.json/.png) and the best count."""
  targets = ("stage",)
  num: int = registry.option(8, "sr_psnr: held-out clips")
  seed: int = registry.option(0, "seed of the first clip's draw (clip i: seed + i)")
  samples: int = registry.option(1, "sr_psnr: draws per clip; > 1 also scores their average "
                                 "(the posterior-mean estimate)")
  sweep_steps: str = registry.option("", "sr_psnr: comma-separated step counts to score in turn "
                                     "(e.g. 16,8,4,2,1)")
  split: str = registry.option("test", "sr_psnr: held-out split (validation where the dataset has "
                               "one: for choosing settings)")

  def run(self, sampler, out_dir: str, log=print):
    from imagen_video.eval import report as report_lib
    steps = [int(v) for v in self.sweep_steps.split(",")] if self.sweep_steps else [None]
    results = []
    for r in evaluate_steps(sampler, steps, num=self.num, seed=self.seed, samples=self.samples,
                            split=self.split):
      results.append(r)
      log(f"[sr_psnr] {r['steps']} steps: delta per draw {r['delta']:+.2f} ± {r['delta_se']:.2f} dB, "
          f"vs back-projected baseline {r['delta_bp']:+.2f} ± {r['delta_se_bp']:.2f} ({r['seconds']:.0f} s)")
    if not self.sweep_steps:
      r = results[0]
      header = (f"{registry.describe(sampler)}; aug_level {r['aug_level']}")
      if "ssim_model" in r:
        header += (f"; SSIM per frame (first draw): model {r['ssim_model']:.4f}, "
                   f"{r['baseline']} {r['ssim_baseline']:.4f}")
      report = f"{header}\n\n{table(r)}"
      log(report)
      if report_lib.write(out_dir, "sr_psnr", report, summary(r)):
        contact_sheet(r, os.path.join(out_dir, "sr_psnr.png"))
      return r
    rows = [summary(r) for r in results]
    best = best_steps(rows)
    r = rows[0]
    report = (f"{sampler.name} step {r['step']}, {self.num} {r['dataset']} clips, {r['sampler']}, "
              f"guidance {r['guidance']}, aug_level {r['aug_level']}, vs {r['baseline']}; best for "
              f"one draw: {best} steps\n\n{steps_table(rows)}")
    log(report)
    if report_lib.write(out_dir, "sr_psnr_steps", report, {"best_steps": best, "results": rows}):
      steps_plot(rows, os.path.join(out_dir, "sr_psnr_steps.png"))
    return rows
