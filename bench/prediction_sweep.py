"""Video prediction settings against the truth: how well one window continues given frames.

    python -m bench.prediction_sweep --config "configs/cascade_tiny.py:stage=base,root=R,data_dir=D" \
        --workdir R/base --rows reconstruction:4:4:3,reconstruction:6:16:1,replacement:6:0:1 \
        [--num 16] [--first 0] [--steps 32] --out_dir DIR

Each row METHOD:CONTEXT:RECON_WEIGHT:GUIDANCE[:SAMPLER[:STEPS]] gives the first CONTEXT frames
of the first --num held-out moving_shapes clips and samples the rest of the window (with the
config's sampler and --steps unless the row names others); the detected centre of every
generated frame is compared with the true one (pixels), beside holding the last given frame,
and its progress along the true path since the last given frame is divided by the true
progress (median over clips: below 1, the shape slows down). This picks the extension settings (`known.default_context`, the weights in
docs/results/conditional.md) without the cost of a whole autoregressive extension.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from imagen_video.cli import flags_util
from imagen_video.data import held_out
from imagen_video.eval import conditional
from imagen_video.eval import report as report_lib
from imagen_video.stage import known as known_lib
from imagen_video.stage.sampler import StageSampler


def parse_rows(text: str, sampler: str, steps: int) -> list[tuple[str, int, float, float, str, int]]:
  rows = []
  for item in text.split(","):
    parts = item.split(":")
    if not 4 <= len(parts) <= 6 or parts[0] not in conditional.METHODS:
      raise SystemExit(f"--rows item {item!r}: expected METHOD:CONTEXT:RECON_WEIGHT:GUIDANCE"
                       f"[:SAMPLER[:STEPS]] with METHOD one of {conditional.METHODS}")
    parts += [sampler, steps][len(parts) - 4:]
    rows.append((parts[0], int(parts[1]), float(parts[2]), float(parts[3]), parts[4], int(parts[5])))
  return rows


def center_errors(video, truth) -> np.ndarray:
  """[N, T] pixel distance of each frame's detected centre from the truth's (a frame without
  the shape counts half a diagonal)."""
  h, w = truth.shape[2:4]
  err = conditional.torus_distance(conditional.circular_centroids(video),
                                   conditional.circular_centroids(truth), h, w)
  return np.where(np.isnan(err), np.hypot(h, w) / 2, err)


def progress_ratio(video, truth, context: int) -> np.ndarray:
  """[T - context]: median over clips of each generated frame's displacement from the last
  given frame's true centre, projected on the true displacement, over the true one's length
  (1: on pace; frames without the shape, or with no true motion, left out)."""
  h, w = truth.shape[2:4]
  found, true = conditional.circular_centroids(video), conditional.circular_centroids(truth)
  scale = np.array([w, h])
  d_true = conditional.torus_offset(true[:, context:] - true[:, context - 1:context]) * scale
  d_found = conditional.torus_offset(found[:, context:] - true[:, context - 1:context]) * scale
  norm2 = (d_true ** 2).sum(-1)
  ratio = (d_found * d_true).sum(-1) / np.where(norm2 > 1e-6, norm2, np.nan)
  return np.nanmedian(ratio, axis=0)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--rows", default="replacement:6:0:1,reconstruction:4:4:3,reconstruction:6:16:1")
  p.add_argument("--num", type=int, default=16, help="held-out clips")
  p.add_argument("--first", type=int, default=0, help="skip this many test clips first (to choose "
                 "settings on clips that a later evaluation of the first ones does not use)")
  p.add_argument("--steps", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out_dir", required=True)
  a = p.parse_args()
  config = flags_util.load_config(a.config)
  clips = held_out.clips(config, a.first + a.num)
  clips = {"video": clips["video"][a.first:], "caption": clips["caption"][a.first:]}
  truth = clips["video"] * 2 - 1
  frames = truth.shape[1]
  results = []
  for method, context, weight, guidance, sampler, steps in parse_rows(a.rows, config.sample.sampler,
                                                                     a.steps):
    stage = StageSampler.load(a.workdir, config=config, steps=steps, guidance=guidance, sampler=sampler)
    sample = conditional.request_sampler(stage, seed=a.seed, recon_weight=weight)
    t0 = time.time()
    video = np.asarray(sample(clips["caption"], known_lib.prefix(truth[:, :context], frames), method))
    held = np.concatenate([truth[:, :context], np.repeat(truth[:, context - 1:context],
                                                         frames - context, 1)], 1)
    err, hold = center_errors(video, truth)[:, context:], center_errors(held, truth)[:, context:]
    pace = progress_ratio(video, truth, context)
    results.append({"method": method, "context": context, "recon_weight": weight, "guidance": guidance,
                    "sampler": sampler, "steps": steps, "progress_ratio": pace.tolist(),
                    "per_frame": err.mean(0).tolist(), "mean": float(err.mean()),
                    "hold_per_frame": hold.mean(0).tolist(), "seconds": time.time() - t0})
    print(f"[prediction_sweep] {method} context {context} w_r {weight:g} guidance {guidance:g} "
          f"{sampler} {steps}: per frame {np.round(err.mean(0), 2)} (hold {np.round(hold.mean(0), 2)}), "
          f"progress x{np.round(pace, 2)} "
          f"{time.time() - t0:.0f} s", flush=True)
  lines = [f"Prediction: {a.config} ({a.workdir} step {stage.step}), held-out clips {a.first}-"
           f"{a.first + a.num - 1}; centre error "
           "of each generated frame (px) and its progress along the true path (x true)", "",
           "| method | context | w_r | guidance | sampler | error per generated frame | mean | "
           "holding the last frame | progress |", "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)
    lines.append(f"| {r['method']} | {r['context']} | {r['recon_weight']:g} | {r['guidance']:g} | "
                 f"{r['sampler']} {r['steps']} | {fmt(r['per_frame'])} | {r['mean']:.2f} | "
                 f"{fmt(r['hold_per_frame'])} | {fmt(r['progress_ratio'])} |")
  table = "\n".join(lines)
  print(table)
  report_lib.write(a.out_dir, "prediction_sweep", table, {"rows": results})


if __name__ == "__main__":
  main()
