"""Conditional generation measured against ground truth on held-out clips.

Tasks (a `stage.known` condition built from each test clip; the rest is generated):
  i2v            frame 0 given                       baseline: frame 0 held
  interpolation  keyframes 0, T/2 - 1 and T - 1      baseline: linear blend between keyframes
                 (uneven gaps: two ratios at once)
  prediction     the first T/2 frames given          baseline: the last given frame held
  inpainting     a centred box of half the width and baseline: the known pixels' mean colour
                 height hidden in every frame
Each task is sampled by replacement and by reconstruction guidance; scores are
PSNR over the generated pixels and SSIM of the generated frames (every frame for
inpainting), per clip, with the paired difference between the methods.

Extension (`extension`): on a `wrap` moving_shapes dataset (motion continues
across the borders, so any length has a ground truth), the first T/2 frames of
a test clip are extended autoregressively to `factor` x T frames, T/2 frames of
context per window. The shape's centre is found per frame (a circular centroid,
so a shape split by a border counts once) and compared with the true centre:
trajectory error in pixels (distance on the torus) and the share of frames where
the shape keeps its colour.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from imagen_video.data import held_out
from imagen_video.eval import caption_check, registry, sr_psnr, video_metrics
from imagen_video.stage import known as known_lib
from imagen_video.stage.sampler import Extension, Request

TASKS = ("i2v", "interpolation", "prediction", "inpainting")
METHODS = ("replacement", "reconstruction")


def condition(task: str, video) -> known_lib.Known:
  """The Known of `task` for clips `video` [N, T, H, W, 3] in [-1, 1]."""
  t, h, w = video.shape[1:4]
  if task == "i2v":
    return known_lib.first_frame(video[:, 0], t)
  if task == "interpolation":
    keys = [0, t // 2 - 1, t - 1]
    return known_lib.keyframes(video[:, keys], keys, t)
  if task == "prediction":
    return known_lib.prefix(video[:, :t // 2], t)
  if task == "inpainting":
    region = np.zeros((1, 1, h, w))
    region[..., h // 4:h - h // 4, w // 4:w - w // 4] = 1
    return known_lib.inpainting(video, region)
  raise ValueError(f"task {task!r}: expected one of {TASKS}")


def baseline(task: str, video, known: known_lib.Known) -> np.ndarray:
  """The classical answer to `task` from the known part only (videos in [-1, 1])."""
  t = video.shape[1]
  if task in ("i2v", "prediction"):
    last = int(known.mask[0, :, 0, 0, 0].sum()) - 1
    return np.concatenate([video[:, :last + 1], np.repeat(video[:, last:last + 1], t - last - 1, 1)], 1)
  if task == "interpolation":
    keys = np.flatnonzero(known.mask[0, :, 0, 0, 0])
    idx = np.arange(t)
    hi = np.clip(np.searchsorted(keys, idx), 1, len(keys) - 1)
    lo = hi - 1
    f = ((idx - keys[lo]) / (keys[hi] - keys[lo]))[None, :, None, None, None]
    return (1 - f) * video[:, keys[lo]] + f * video[:, keys[hi]]
  if task == "inpainting":
    m = known.mask
    fill = (video * m).sum(axis=(1, 2, 3), keepdims=True) / m.sum(axis=(1, 2, 3), keepdims=True)
    return m * video + (1 - m) * fill
  raise ValueError(f"task {task!r}: expected one of {TASKS}")


def scores(pred, truth, known: known_lib.Known) -> dict:
  """Per-clip PSNR over the generated pixels and mean SSIM of the generated frames."""
  unknown = 1.0 - known.mask  # [N, T, H, W, 1]
  a, b = video_metrics.as_unit(pred), video_metrics.as_unit(truth)
  sq = ((a - b) ** 2 * unknown).sum(axis=(1, 2, 3, 4)) / (unknown.sum(axis=(1, 2, 3, 4)) * 3)
  psnr = 10 * np.log10(1.0 / np.maximum(sq, 1e-12))
  frames = unknown[0, :, :, :, 0].max(axis=(1, 2)) > 0
  ssim = video_metrics.ssim_per_frame(a, b)[:, frames].mean(axis=1)
  return {"psnr": psnr, "ssim": ssim}


def _summary(s: dict) -> dict:
  return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_clip": np.asarray(v).tolist()}
          for k, v in s.items()}


def evaluate_tasks(sample, clips: dict, *, tasks=TASKS, methods=METHODS, log=print) -> dict:
  """`sample(prompts, known, method)` -> [N, T, H, W, 3] in [-1, 1]; `clips` from
  `data.held_out.clips` (video in [0, 1], caption). Returns per task: each method's and
  the baseline's scores, paired PSNR deltas, and the videos."""
  truth = clips["video"] * 2 - 1
  out = {}
  for task in tasks:
    known = condition(task, truth)
    rows, videos = {}, {"truth": truth, "known": known.video * known.mask}
    base = baseline(task, truth, known)
    rows["baseline"], videos["baseline"] = scores(base, truth, known), base
    for method in methods:
      t0 = time.time()
      video = np.asarray(sample(clips["caption"], known, method))
      rows[method], videos[method] = scores(video, truth, known), video
      log(f"[conditional] {task:13s} {method:14s} PSNR {rows[method]['psnr'].mean():6.2f} dB  "
          f"SSIM {rows[method]['ssim'].mean():.3f}  ({time.time() - t0:.0f} s)")
    log(f"[conditional] {task:13s} {'baseline':14s} PSNR {rows['baseline']['psnr'].mean():6.2f} dB  "
        f"SSIM {rows['baseline']['ssim'].mean():.3f}")
    out[task] = {"scores": {k: _summary(v) for k, v in rows.items()},
                 "recon_vs_replacement": sr_psnr.paired(rows[methods[-1]]["psnr"], rows[methods[0]]["psnr"])
                 if len(methods) > 1 else None,
                 "best_vs_baseline": sr_psnr.paired(rows[methods[-1]]["psnr"], rows["baseline"]["psnr"]),
                 "videos": videos}
  return out


# -- extension -------------------------------------------------------------------
def circular_centroids(video, threshold: float = 0.35) -> np.ndarray:
  """[N, T, 2] (x, y) in [0, 1) of each frame's foreground on a torus (NaN if empty):
  the angle of the weighted mean of e^{2 pi i x}, so a shape split by a border counts once."""
  v = video_metrics.as_unit(video)
  weight = v.max(axis=-1)
  weight = np.where(weight > threshold, weight, 0.0)
  n, t, h, w = weight.shape
  out = np.full((n, t, 2), np.nan, np.float32)
  for axis, size, col in ((3, w, 0), (2, h, 1)):
    ang = 2 * np.pi * (np.arange(size) + 0.5) / size
    prof = weight.sum(axis=5 - axis)  # mass along the other axis: [N, T, size]
    z = (prof * np.exp(1j * ang)).sum(-1)
    ok = np.abs(z) > 1e-6
    out[..., col] = np.where(ok, (np.angle(z) / (2 * np.pi)) % 1.0, np.nan)
  return out


def torus_offset(d) -> np.ndarray:
  """Differences of normalised coordinates taken the shortest way round the torus: in [-0.5, 0.5)."""
  return (np.asarray(d) + 0.5) % 1.0 - 0.5


def torus_distance(a, b, height: int, width: int) -> np.ndarray:
  """Pixel distance between normalised (x, y) points on a torus."""
  d = np.abs(np.asarray(a) - np.asarray(b))
  d = np.minimum(d, 1 - d) * np.array([width, height])
  return np.sqrt((d ** 2).sum(-1))


def aligned_psnr(video, truth, found, true_centres) -> np.ndarray:
  """[N, T] PSNR (dB) of each frame against the true one after moving it, round the torus by
  whole pixels, so its detected centre lands on the true centre: how well the shape itself
  is kept, whatever its position error (a frame without the shape is scored unmoved)."""
  n, t, h, w, _ = truth.shape
  shift = np.rint(torus_offset(np.asarray(true_centres) - found) * (w, h))
  shift = np.nan_to_num(shift).astype(int)
  moved = np.stack([np.stack([np.roll(video[i, f], tuple(shift[i, f, ::-1]), axis=(0, 1))
                              for f in range(t)]) for i in range(n)])
  return video_metrics.psnr_per_frame(moved * 0.5 + 0.5, np.asarray(truth) * 0.5 + 0.5)


def line_fit(track, height: int, width: int) -> tuple[float, np.ndarray]:
  """Best constant-velocity line through a torus track [T, 2]: (rms distance of the track
  from it in pixels, i.e. how straight the motion is whatever its speed; velocity in pixels
  per frame). Frames without the shape (NaN) are left out of the fit; NaN if fewer than 3
  frames have it."""
  track = np.asarray(track, np.float64)
  frames = np.flatnonzero(~np.isnan(track).any(-1))
  if len(frames) < 3:
    return float("nan"), np.full(2, np.nan)
  step = np.diff(track[frames], axis=0)
  path = np.concatenate([[0 * step[0]], np.cumsum(torus_offset(step), axis=0)]) * (width, height)
  t = np.stack([np.ones(len(frames)), frames], 1)
  coef = np.linalg.lstsq(t, path, rcond=None)[0]
  return float(np.sqrt(((path - t @ coef) ** 2).sum(-1).mean())), coef[1]


def motion_kept(found, true, height: int, width: int) -> dict:
  """Per clip, from one `line_fit` of each generated track: its distance from that line,
  the line's speed over the true one, and the angle (degrees) between their directions;
  tells a drift in speed from one in direction."""
  out = {"line_residual": [], "speed_ratio": [], "direction_error_deg": []}
  for f, c in zip(found, true):
    residual, v = line_fit(f, height, width)
    u = line_fit(c, height, width)[1]
    nv, nu = np.linalg.norm(v), np.linalg.norm(u)
    out["line_residual"].append(residual)
    out["speed_ratio"].append(float(nv / nu))
    out["direction_error_deg"].append(float(np.degrees(np.arccos(np.clip(np.dot(v, u) / (nv * nu), -1, 1)))))
  return out


def extension(sample, clips: held_out.ExtensionClips, *, window: int, context: int | None = None,
              methods=METHODS, refresh: float = 0.0, refresh_floor: float = known_lib.REFRESH_FLOOR,
              log=print) -> dict:
  """Each method extends the first `context` true frames (default
  `known.default_context(window)`) to the clips' length; trajectory error (pixels, per
  generated frame), straightness of the generated track, colour kept and the shape's
  aligned PSNR. `refresh` > 0 re-denoises each window from that time (text only, SDEdit)
  before its frames are kept, unless that leaves less than `refresh_floor` of their
  contrast (`known.extend`)."""
  n, total, h, w, _ = clips.video.shape
  context = context or known_lib.default_context(window)
  black_db = float(video_metrics.psnr_per_frame(np.zeros_like(clips.video), clips.video * 0.5 + 0.5)
                   [:, context:].mean())  # the shape score of frames with nothing in them
  out = {}
  for method in methods:
    t0 = time.time()
    video = sample(clips.captions, None, method, extension=Extension(
        clips.video[:, :context], total, context, refresh, refresh_floor))
    found = circular_centroids(video)
    shape_db = aligned_psnr(video, clips.video, found, clips.centers)[:, context:]
    err = torus_distance(found, clips.centers, h, w)[:, context:]  # NaN where no shape is found
    kept = np.array([[caption_check.classify(video[i, f:f + 1] * 0.5 + 0.5)["color"] == clips.colors[i]
                      for f in range(context, total)] for i in range(n)])
    per_clip = np.where(np.isnan(err), np.hypot(h, w) / 2, err).mean(axis=1)  # lost = half a diagonal
    motion = motion_kept(found[:, context - 1:], clips.centers[:, context - 1:], h, w)
    line = np.array(motion.pop("line_residual"))
    out[method] = {"trajectory_error_px": float(per_clip.mean()), "per_clip": per_clip.tolist(),
                   "line_residual_px": float(np.nanmean(line)), "context": context,
                   "per_frame": np.nanmean(err, axis=0).tolist(),
                   "frames_without_shape": float(np.isnan(err).mean()),
                   "color_kept": float(kept.mean()), "video": video, "truth": clips.video, **motion,
                   "shape_psnr_db": float(shape_db.mean()), "shape_psnr_per_frame": shape_db.mean(0).tolist(),
                   "shape_psnr_per_clip": shape_db.mean(1).tolist(), "refresh": refresh,
                   "refresh_floor": refresh_floor if refresh else None,
                   "shape_psnr_black_db": black_db,
                   "median_speed_ratio": float(np.nanmedian(motion["speed_ratio"])),
                   "median_direction_error_deg": float(np.nanmedian(motion["direction_error_deg"]))}
    log(f"[extension] {method:14s} {total} frames from {context}: trajectory error "
        f"{per_clip.mean():.2f} px, off its own line {np.nanmean(line):.2f} px, speed x"
        f"{out[method]['median_speed_ratio']:.2f}, direction off by "
        f"{out[method]['median_direction_error_deg']:.0f} deg (medians), colour kept "
        f"{kept.mean():.0%}, shape {shape_db.mean():.2f} dB aligned  ({time.time() - t0:.0f} s)")
  if len(methods) > 1:
    # error of the first method minus the last's: positive where the last tracks better
    out["paired"] = sr_psnr.paired(out[methods[0]]["per_clip"], out[methods[-1]]["per_clip"])
  return out


def request_sampler(sampler, *, seed: int, recon_weight=None):
  """sample(prompts, known, method, extension=None) -> float videos of a `StageSampler`, with
  the CLI's request and seed rule (clip i: seed + i)."""
  def sample(prompts, known, method, extension=None):
    r = Request(prompts=tuple(prompts), seed=seed, known=known, conditioning=method,
                recon_weight=recon_weight, extension=extension)
    return sampler.sample(r).video
  return sample


# -- report ----------------------------------------------------------------------
def markdown(tasks: dict | None, ext: dict | None, label: str) -> str:
  lines = [f"# Conditional generation: {label}", ""]
  if tasks:
    lines += ["PSNR over the generated pixels, SSIM of the generated frames (mean ± std over clips); "
              "delta = reconstruction - replacement PSNR (paired SE, clips won).", "",
              "| task | baseline | replacement | reconstruction | delta (dB) |", "|---|---|---|---|---|"]
    for task, r in tasks.items():
      cell = lambda k: (f"{r['scores'][k]['psnr']['mean']:.2f} dB / {r['scores'][k]['ssim']['mean']:.3f}"
                        if k in r["scores"] else "-")
      d = r["recon_vs_replacement"]
      delta = f"{d['delta']:+.2f} ± {d['delta_se']:.2f}, {d['wins']}" if d else "-"
      lines.append(f"| {task} | {cell('baseline')} | {cell('replacement')} | {cell('reconstruction')} | {delta} |")
    lines.append("")
  if ext:
    methods = [m for m in ext if m != "paired"]
    lines += [f"Extension (autoregressive, wrap-around clips, {ext[methods[0]]['context']} frames of "
              "context per window): trajectory error of the detected centre against the truth "
              "(pixels; a frame without the shape counts half a diagonal), rms distance of the "
              "generated track from its own best straight line at constant speed, that line's "
              "speed over the true one and its direction error (medians over clips), frames "
              "without the shape, colour kept, PSNR of each frame moved so its centre is on the "
              f"true one (the shape kept; all-black frames score {ext[methods[0]]['shape_psnr_black_db']:.2f} dB).",
              "", "| method | trajectory error (px) | off a straight line (px) | speed ratio | "
              "direction error (deg) | frames without shape | colour kept | shape (dB) |",
              "|---|---|---|---|---|---|---|---|"]
    for m in methods:
      e = ext[m]
      lines.append(f"| {m} | {e['trajectory_error_px']:.2f} | {e['line_residual_px']:.2f} | "
                   f"{e['median_speed_ratio']:.2f} | {e['median_direction_error_deg']:.0f} | "
                   f"{e['frames_without_shape']:.0%} | {e['color_kept']:.0%} | {e['shape_psnr_db']:.2f} |")
    if "paired" in ext:
      p = ext["paired"]
      lines.append(f"\n{methods[0]} minus {methods[-1]} error: {p['delta']:+.2f} ± {p['delta_se']:.2f} px "
                   f"(paired SE), {methods[-1]} better on {p['wins']} clips")
  return "\n".join(lines)


def write_report(out_dir: str, tasks: dict | None, ext: dict | None, label: str, clips: int = 2):
  """conditional.md/.json, conditional.png (per task: truth, known, baseline, methods for
  the first `clips` clips) and extension.png (sheet and per-frame error plot)."""
  import os
  from imagen_video.eval import report as report_lib
  from imagen_video.media import contact_sheet
  strip = lambda r: {k: v for k, v in r.items() if k not in ("videos", "video", "truth")}
  summary = {"label": label, "tasks": {t: strip(r) for t, r in (tasks or {}).items()},
             "extension": {m: strip(r) for m, r in (ext or {}).items()}}
  if not report_lib.write(out_dir, "conditional", markdown(tasks, ext, label), summary):
    return
  if tasks:
    vids, caps = [], []
    for task, r in tasks.items():
      for i in range(min(clips, len(r["videos"]["truth"]))):
        for name in ("truth", "known", "baseline", *METHODS):
          if name in r["videos"]:
            vids.append(r["videos"][name][i] * 0.5 + 0.5)
            caps.append(f"{task} clip {i}: {name}")
    contact_sheet.contact_sheet(vids, caps, os.path.join(out_dir, "conditional.png"), max_frames=32)
  if ext:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = [m for m in ext if m != "paired"]
    shown = range(min(clips, len(ext[methods[0]]["video"])))
    vids = [v for i in shown for v in [ext[methods[0]]["truth"][i]] + [ext[m]["video"][i] for m in methods]]
    vids = [v * 0.5 + 0.5 for v in vids]
    caps = [f"clip {i}: {m}" for i in shown for m in ("truth", *methods)]
    contact_sheet.contact_sheet(vids, caps, os.path.join(out_dir, "extension.png"), max_frames=32)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    total = ext[methods[0]]["video"].shape[1]
    for key, ax, name in (("per_frame", axes[0], "trajectory error (px)"),
                          ("shape_psnr_per_frame", axes[1], "shape, aligned PSNR (dB)")):
      for m in methods:
        ax.plot(range(total - len(ext[m][key]), total), ext[m][key], label=m)
      ax.set_xlabel("frame"), ax.set_ylabel(name), ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "extension_error.png"), dpi=100)
    plt.close(fig)


@registry.register("conditional")
@dataclasses.dataclass
class Conditional(registry.Evaluator):
  """Image-to-video, interpolation, prediction and inpainting of held-out clips by replacement
  and by reconstruction guidance (PSNR/SSIM against the truth and a classical baseline); on a
  wrap moving_shapes dataset also extension to `extend` x the clip length. Writes
  conditional.md/.json/.png, extension.png, extension_error.png."""
  targets = ("stage",)
  num: int = registry.option(4, "conditional: held-out clips")
  seed: int = registry.option(0, "seed of the first clip's sample (clip i: seed + i)")
  tasks: str = registry.option("i2v,interpolation,prediction,inpainting,extension",
                               "conditional: which tasks (comma-separated)")
  extend: int = registry.option(4, "conditional: extension length in clip lengths")
  context: int = registry.option(None, "conditional: extension's context frames per window")
  recon_weight: float = registry.option(None, "reconstruction guidance weight")
  refresh: float = registry.option(0.0, "conditional: re-denoise each extension window from this time")
  refresh_floor: float = registry.option(known_lib.REFRESH_FLOOR, "conditional: keep a window "
                                         "whose refresh leaves less than this share of its contrast")
  first: int = registry.option(0, "conditional: extension's first test clip")

  def run(self, sampler, out_dir: str, log=print) -> dict:
    tasks = [t for t in self.tasks.split(",") if t]
    unknown = set(tasks) - set(TASKS) - {"extension"}
    if unknown:
      raise ValueError(f"tasks: unknown {sorted(unknown)}; expected some of {list(TASKS) + ['extension']}")
    if not 0.0 <= self.refresh < 1.0 or not 0.0 <= self.refresh_floor <= 1.0:
      raise ValueError(f"refresh {self.refresh} / refresh_floor {self.refresh_floor}: expected a "
                       "time in [0, 1) and a share in [0, 1]")
    config = sampler.config
    sample = request_sampler(sampler, seed=self.seed, recon_weight=self.recon_weight)
    picked = [t for t in TASKS if t in tasks]
    result = evaluate_tasks(sample, held_out.clips(config, self.num), tasks=picked, log=log) \
        if picked else None
    ext = None
    if "extension" in tasks:
      if config.data.builder.get("wrap"):
        clips = held_out.extension_clips(config.data.builder, self.num, self.extend, first=self.first)
        ext = extension(sample, clips, window=config.data.builder.frames, context=self.context,
                        refresh=self.refresh, refresh_floor=self.refresh_floor, log=log)
      else:
        log("[conditional] extension skipped: it needs data.builder.wrap=True (a wrap-around "
            "moving_shapes dataset, where the continued motion has a ground truth)")
    label = (f"{registry.describe(sampler)}, reconstruction weight "
             f"{self.recon_weight if self.recon_weight is not None else 'default'}, {self.num} test "
             "clips" + (f" from {self.first}" if self.first else "")
             + (f", extension refreshed from t = {self.refresh:g} (floor {self.refresh_floor:g})"
                if self.refresh else ""))
    write_report(out_dir, result, ext, label)
    log(f"wrote {out_dir}/conditional.md")
    return {"tasks": result, "extension": ext}
