"""The ablation runner: train an ablation's variants (a sweep), measure each, report.

An ablation is a `configs/ablations.py` entry. Variants train one after another
into ROOT/runs/NAME through `train/sweep.py` (a variant already trained to the
budget is reused, so ablations sharing `reference` train it once); then every
row (a variant, or a guidance setting of one) is measured on held-out
`moving_shapes` clips and the report goes to ROOT/reports/ABLATION/:
report.md (table, budget, a sentence per row on the papers' direction),
report.json, metrics.png (one bar chart per metric), samples.png (a sample
of the same prompts per row).

Measurements (`eval.kind`):
  base / guidance  x0_mse: denoising error of held-out clips averaged over 5 noise
                   levels (comparable across parameterisations, unlike the loss);
                   color / direction / color_direction: the caption check;
                   color_shift and diversity (eval/video_metrics.py); fvd (I3D) of
                   samples for the captions of fvd_num test clips; with a CLIP checkpoint
                   (`ablate --clip DIR`) clip_score and r_precision (eval/clip_score.py)
                   of the caption-check samples, with their standard errors.
  sr               PSNR / SSIM per frame of the stage's samples and of its classical
                   baseline, from the true low-res input (clean) and from that input
                   degraded like a previous stage's sample (blur, grain, colour offset).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from imagen_video.train import sweep



def train_variants(spec, root: str, data_dir: str) -> tuple[str, list[dict]]:
  """Trains what the ablation needs; -> (stage config spec, its variants)."""
  config = spec.train_config.format(data_dir=data_dir)
  variants = [dict(v, overrides=sweep.parse_overrides(v["overrides"])) for v in spec.variants]
  to_train = [dict(name=v["name"], overrides=v["overrides"]) for v in variants
              if not v.get("run") and (not spec.train_only or v["name"] in spec.train_only)]
  summary = sweep.run(config, os.path.join(root, "runs"), to_train, done_at=spec.steps)
  failed = [r["name"] for r in summary if r["status"]]
  if failed:
    raise RuntimeError(f"ablation {spec.name}: training of {failed} failed (logs above; "
                       f"{os.path.join(root, 'runs', 'summary.json')})")
  return config, variants


def run(spec, root: str, *, data_dir: str | None = None, clip: str | None = None) -> dict:
  """Trains, measures and reports one ablation; returns the report's data."""
  from imagen_video.utils import configs_loader
  data_dir = data_dir or os.path.join(root, "tensorflow_datasets")
  t0 = time.time()
  config_spec, variants = train_variants(spec, root, data_dir)
  train_s = time.time() - t0
  rows = []
  for v in variants:
    config = configs_loader.load_with_overrides(config_spec, v["overrides"])
    workdir = os.path.join(root, "runs", v.get("run") or v["name"])
    if spec.eval.kind == "sr":
      rows += _measure_sr(spec, v, config, workdir)
    else:
      rows += _measure_base(spec, v, config, workdir, clip)
  result = {"name": spec.name, "title": spec.title, "paper": spec.paper, "steps": spec.steps,
            "train_config": config_spec, "train_seconds": train_s,
            "eval_seconds": time.time() - t0 - train_s, "rows": rows, "clip": clip}
  write_report(spec, result, os.path.join(root, "reports", spec.name))
  return result


def _row(v, workdir, metrics, seconds, sheet) -> dict:
  rate = _train_rate(workdir)
  return {"name": v["name"], "label": v["label"], "vs": v.get("vs", ""),
          "expect": dict(v.get("expect", {})), "metrics": metrics, "eval_seconds": seconds,
          "train_steps_per_sec": rate, "sheet": sheet}


def _print_row(spec, name: str, metrics: dict, seconds: float) -> None:
  print(f"[ablate] {spec.name}/{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        + f" (measured in {seconds:.0f} s)", flush=True)


def _train_rate(workdir: str) -> float | None:
  rates = [r["steps_per_sec"] for r in sweep.train_metrics(workdir) if r.get("steps_per_sec")]
  return float(np.median(rates)) if rates else None


def diversity_prompts(e) -> list[str]:
  """`e.diversity_prompts` of the 28 color x direction prompts, spread over colors."""
  from imagen_video.eval import prompt_following
  prompts = prompt_following.grammar_prompts(1)
  return prompts[::max(1, len(prompts) // e.diversity_prompts)][:e.diversity_prompts]


def _cached(workdir: str, key: dict, measure):
  """(metrics, sheet videos, seconds it took) of `measure()`, kept in WORKDIR/ablation_eval/ under a hash of
  `key` (eval settings, guidance, checkpoint step): ablations sharing a run measure it once."""
  import hashlib
  name = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
  path = os.path.join(workdir, "ablation_eval", name)
  if os.path.exists(path + ".json") and os.path.exists(path + ".npy"):
    with open(path + ".json") as f:
      saved = json.load(f)
    return saved["metrics"], np.load(path + ".npy"), saved.get("seconds", 0.0)
  t0 = time.time()
  metrics, sheet = measure()
  seconds = time.time() - t0
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.save(path + ".npy", np.asarray(sheet))
  with open(path + ".json.tmp", "w") as f:
    json.dump({"key": key, "metrics": metrics, "seconds": seconds}, f, indent=2)
  os.replace(path + ".json.tmp", path + ".json")  # the json last: a half-written entry is ignored
  return metrics, sheet, seconds


def _measure_base(spec, variant, config, workdir, clip=None) -> list[dict]:
  """One row per guidance setting (kind guidance) or one row at the config's guidance."""
  from imagen_video.data import held_out as held_out_lib
  from imagen_video.eval import fvd, prompt_following, sampling, text_probe, video_metrics
  from imagen_video.media import video_io
  from imagen_video.stage.sampler import StageSampler
  e = spec.eval
  sampler = StageSampler.load(workdir, config=config)
  clips = held_out_lib.clips(config, max(e.x0_clips, e.fvd_num))
  t0 = time.time()
  errors = text_probe.x0_errors(sampler, clips["video"][:e.x0_clips] * 2 - 1,
                                {"true": clips["caption"][:e.x0_clips]}, seed=e.seed)
  x0_mse, x0_seconds = float(np.mean(errors["true"])), time.time() - t0
  held_out = {"color_shift": video_metrics.color_shift(clips["video"][:e.fvd_num or None])}
  settings = spec.settings if e.kind == "guidance" else [variant]
  rows = []
  for s in settings:
    w = spec.guidance.get(s["name"], config.sample.guidance) if e.kind == "guidance" \
        else config.sample.guidance
    log = lambda line, name=s["name"]: print(f"[ablate] {spec.name}/{name}: {line}", flush=True)

    def generate(prompts, seed, w=w):  # always e.batch prompts per call: one compilation
      return sampling.uint8(sampling.draw(sampler, prompts, seed=seed, batch=e.batch, log=log,
                                          guidance=w)[0])

    def measure():
      prompts = prompt_following.grammar_prompts(e.caption_num)
      caption = prompt_following.evaluate(generate(prompts, e.seed), prompts)
      groups = [p for p in diversity_prompts(e) for _ in range(e.diversity_samples)]
      div_videos = generate(groups, e.seed + len(prompts))
      metrics = {"x0_mse": x0_mse, **caption["accuracy"],
                 "color_shift": video_metrics.color_shift(caption["videos"]),
                 "diversity": video_metrics.diversity(div_videos, groups)}
      if clip:
        from imagen_video.eval import clip_score
        metrics.update(clip_score.measure(clip, caption["videos"], prompts, seed=e.seed))
      if e.fvd_num:
        real = video_io.to_uint8(clips["video"][:e.fvd_num], (0.0, 1.0))
        caps = clips["caption"][:e.fvd_num]
        metrics["fvd"] = fvd.evaluate(lambda i0, i1: generate(caps[i0:i1], e.seed + i0), real, caps,
                                      batch=e.batch, extractor=_i3d())["fvd"]
      return metrics, div_videos[::e.diversity_samples][:3]  # a sample of 3 prompts

    weights = w if isinstance(w, (int, float)) else dict(w)
    key = dict(eval=e.to_dict(), setting=s["name"], guidance=weights, step=sampler.step, seeds="v2")
    if clip:  # runs measured without CLIP keep their cache entries
      key["clip"] = os.path.abspath(clip)
    metrics, sheet, seconds = _cached(workdir, key, measure)
    seconds += x0_seconds
    _print_row(spec, s["name"], metrics, seconds)
    rows.append(dict(_row(s, workdir, metrics, seconds, sheet), held_out=held_out))
  if e.kind == "guidance":
    for r in rows:  # guidance does not change the denoiser
      r["metrics"].pop("x0_mse")
  return rows


_I3D = []


def _i3d():
  """One I3D feature extractor (and compilation) for every row of a run."""
  if not _I3D:
    from imagen_video.eval import fvd
    _I3D.append(fvd.FeatureExtractor())
  return _I3D[0]


def degrade(low, *, blur_sigma, noise_std, color_offset, seed=0) -> np.ndarray:
  """A previous stage's kind of error on a true low-res input [N, t, h, w, C] in [0, 1]:
  spatial blur, per-pixel grain and a per-clip colour offset."""
  from scipy import ndimage
  rng = np.random.default_rng(seed)
  low = np.asarray(low, np.float64)
  out = ndimage.gaussian_filter(low, sigma=(0, 0, blur_sigma, blur_sigma, 0), mode="nearest")
  out = out + rng.normal(0, noise_std, low.shape)
  out = out + rng.uniform(-color_offset, color_offset, (low.shape[0], 1, 1, 1, low.shape[-1]))
  return np.clip(out, 0, 1).astype(np.float32)


def _measure_sr(spec, variant, config, workdir) -> list[dict]:
  from imagen_video.data import held_out
  from imagen_video.eval import sr_psnr, video_metrics
  from imagen_video.stage import conditioning
  from imagen_video.stage.sampler import StageSampler
  e = spec.eval
  sampler = StageSampler.load(workdir, config=config)
  clips = held_out.clips(config, e.sr_clips)
  kind = conditioning.kind(config)
  t0 = time.time()
  metrics, sheet = {}, None
  inputs = {"clean": clips["low"], "degraded": degrade(clips["low"], seed=e.seed, **dict(e.degrade))}
  for cond, low in inputs.items():
    out = sr_psnr.upsample(sampler, low, clips["caption"], seed=e.seed)
    ours = video_metrics.frame_scores(out, clips["video"])
    base = video_metrics.frame_scores(sr_psnr.baseline(kind, low, clips["video"].shape), clips["video"])
    metrics.update({f"psnr_{cond}": ours["psnr"], f"ssim_{cond}": ours["ssim"],
                    f"baseline_psnr_{cond}": base["psnr"], f"baseline_ssim_{cond}": base["ssim"]})
    if cond == "degraded":
      sheet = (out[:3] * 255).round().astype(np.uint8)
  seconds = time.time() - t0
  _print_row(spec, variant["name"], metrics, seconds)
  return [_row(variant, workdir, metrics, seconds, sheet)]


def verdicts(spec, rows: list[dict]) -> list[str]:
  """A sentence per row: for each metric the papers speak to, the change against the
  row it is compared with, and whether it goes the papers' way."""
  better = dict((k, d) for k, d in spec.metrics)
  by_name = {r["name"]: r for r in rows}
  out = []
  for r in rows:
    if not r["vs"]:
      out.append(f"**{r['name']}**: the row the others are compared with.")
      continue
    ref = by_name.get(r["vs"])
    if ref is None:
      out.append(f"**{r['name']}**: its comparison row {r['vs']} was not measured.")
      continue
    parts = []
    for metric, sign in r["expect"].items():
      if metric not in r["metrics"] or metric not in ref["metrics"]:
        continue
      a, b = r["metrics"][metric], ref["metrics"][metric]
      went = "+" if a > b else "-" if a < b else "="
      word = {"+": "higher", "-": "lower", "=": "equal"}
      good = (sign == "+") == (better.get(metric) == "higher")
      parts.append(f"{metric} {a:.4g} vs {b:.4g} ({word[went]}; the papers expect "
                   f"{word[sign]}, {'better' if good else 'worse'}): "
                   f"{'**agrees**' if went == sign else '**disagrees**'}")
    text = "; ".join(parts) if parts else "no direction claimed by the papers"
    out.append(f"**{r['name']}** vs {r['vs']}: {text}.")
  return out


def markdown(spec, result: dict) -> str:
  names = [k for k, _ in spec.metrics if any(k in r["metrics"] for r in result["rows"])]
  extra = sorted({k for r in result["rows"] for k in r["metrics"]} - set(names))
  cols = [k for k in names + extra if not (k.endswith("_se") and k[:-3] in names + extra)]  # shown as ±
  lines = [f"# {result['title']}", "", f"Papers: {result['paper']}", "",
           f"Budget: {result['steps']} training steps per variant (`{result['train_config']}`); "
           "train min = steps / the run's median logged rate; measuring takes the eval min of "
           "each row (runs and measurements already done are reused, not repeated).", "",
           "| row | setting | " + " | ".join(cols) + " | train min | eval min |",
           "|---|---|" + "---|" * (len(cols) + 2)]
  for r in result["rows"]:
    cells = [(f"{r['metrics'][k]:.4g}" + (f" ± {r['metrics'][k + '_se']:.2g}" if k + "_se" in r["metrics"] else ""))
             if k in r["metrics"] else "" for k in cols]
    rate = r["train_steps_per_sec"]
    train = f"{result['steps'] / rate / 60:.1f}" if rate else ""
    lines.append(f"| {r['name']} | {r['label']} | " + " | ".join(cells) +
                 f" | {train} | {r['eval_seconds'] / 60:.1f} |")
  better = ", ".join(f"{k}: {d} is better" for k, d in spec.metrics if k in cols)
  notes = {"all": "all: color, shape and direction right together",
           "baseline_psnr_clean": "baseline_*: bicubic from the same input",
           "clip_score": f"clip_score / r_precision: CLIP ({result.get('clip')}) on the caption-check "
                         "samples, R-Precision at K = min(100, distinct prompts of the check)"}
  better += "".join(f"; {t}" for k, t in notes.items() if k in cols)
  lines += ["", f"({better}.)"]
  held = next((r["held_out"] for r in result["rows"] if r.get("held_out")), None)
  if held:
    lines += ["", "Held-out clips: " + ", ".join(f"{k} {v:.4g}" for k, v in held.items()) + "."]
  lines += ["", *[f"- {s}" for s in verdicts(spec, result["rows"])]]
  return "\n".join(lines)


def write_report(spec, result: dict, out_dir: str) -> None:
  from imagen_video.eval import report as report_lib
  from imagen_video.media import contact_sheet
  summary = {**result, "rows": [{k: v for k, v in r.items() if k != "sheet"} for r in result["rows"]]}
  if not report_lib.write(out_dir, "report", markdown(spec, result), summary):
    return
  plot(spec, result, os.path.join(out_dir, "metrics.png"))
  videos, captions = [], []
  for r in result["rows"]:
    for i, video in enumerate(r["sheet"]):
      videos.append(video)
      what = diversity_prompts(spec.eval)[i] if spec.eval.kind != "sr" else f"test clip {i}, degraded input"
      captions.append(f"{r['name']}: {what}")
  contact_sheet.stack_rows(videos, captions, os.path.join(out_dir, "samples.png"), title=result["title"])
  print(f"[ablate] report: {os.path.join(out_dir, 'report.md')}", flush=True)


def plot(spec, result: dict, path: str) -> None:
  """One bar chart per metric, a bar per row."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  metrics = [(k, d) for k, d in spec.metrics if any(k in r["metrics"] for r in result["rows"])]
  fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
  names = [r["name"] for r in result["rows"]]
  for ax, (k, d) in zip(axes[0], metrics):
    values = [r["metrics"].get(k, np.nan) for r in result["rows"]]
    ax.bar(range(len(names)), values, color="tab:blue")
    for i, value in enumerate(values):
      ax.annotate(f"{value:.3g}", (i, value), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set_title(f"{k} ({d} is better)", fontsize=9)
  fig.suptitle(result["title"], fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
