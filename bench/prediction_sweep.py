"""Video prediction settings against the truth: how well one window continues given frames.

    python -m bench.prediction_sweep --config "configs/cascade_tiny.py:stage=base,root=R,data_dir=D" \
        --workdir R/base --rows reconstruction:4:4:3,reconstruction:6:16:1,replacement:6:0:1 \
        [--num 16] [--steps 32] --out_dir DIR

Each row METHOD:CONTEXT:RECON_WEIGHT:GUIDANCE gives the first CONTEXT frames of the first
--num held-out moving_shapes clips and samples the rest of the window; the detected centre of
every generated frame is compared with the true one (pixels), beside holding the last given
frame. This picks the extension settings (`known.default_context`, the weights in
docs/results/conditional.md) without the cost of a whole autoregressive extension.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from imagen_video.cli import flags_util
from imagen_video.eval import conditional, sr_psnr
from imagen_video.eval import report as report_lib
from imagen_video.stage import known as known_lib
from imagen_video.train import trainer


def parse_rows(text: str) -> list[tuple[str, int, float, float]]:
  rows = []
  for item in text.split(","):
    parts = item.split(":")
    if len(parts) != 4 or parts[0] not in conditional.METHODS:
      raise SystemExit(f"--rows item {item!r}: expected METHOD:CONTEXT:RECON_WEIGHT:GUIDANCE with "
                       f"METHOD one of {conditional.METHODS}")
    rows.append((parts[0], int(parts[1]), float(parts[2]), float(parts[3])))
  return rows


def center_errors(video, truth) -> np.ndarray:
  """[N, T] pixel distance of each frame's detected centre from the truth's (a frame without
  the shape counts half a diagonal)."""
  h, w = truth.shape[2:4]
  err = conditional.torus_distance(conditional.circular_centroids(video),
                                   conditional.circular_centroids(truth), h, w)
  return np.where(np.isnan(err), np.hypot(h, w) / 2, err)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--rows", default="replacement:6:0:1,reconstruction:4:4:3,reconstruction:6:16:1")
  p.add_argument("--num", type=int, default=16, help="held-out clips")
  p.add_argument("--steps", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out_dir", required=True)
  a = p.parse_args()
  config = flags_util.load_config(a.config)
  clips = sr_psnr.test_clips(config, a.num)
  truth = clips["video"] * 2 - 1
  frames = truth.shape[1]
  stage, ema, step = trainer.load_for_sampling(config, a.workdir)
  results = []
  for method, context, weight, guidance in parse_rows(a.rows):
    sample = conditional.stage_sampler(stage, ema, steps=a.steps, guidance=guidance,
                                       sampler=config.sample.sampler, seed=a.seed, recon_weight=weight)
    t0 = time.time()
    video = np.asarray(sample(clips["caption"], known_lib.prefix(truth[:, :context], frames), method))
    held = np.concatenate([truth[:, :context], np.repeat(truth[:, context - 1:context],
                                                         frames - context, 1)], 1)
    err, hold = center_errors(video, truth)[:, context:], center_errors(held, truth)[:, context:]
    results.append({"method": method, "context": context, "recon_weight": weight, "guidance": guidance,
                    "per_frame": err.mean(0).tolist(), "mean": float(err.mean()),
                    "hold_per_frame": hold.mean(0).tolist(), "seconds": time.time() - t0})
    print(f"[prediction_sweep] {method} context {context} w_r {weight:g} guidance {guidance:g}: "
          f"per frame {np.round(err.mean(0), 2)} (hold {np.round(hold.mean(0), 2)}) "
          f"{time.time() - t0:.0f} s", flush=True)
  lines = [f"Prediction: {a.config} ({a.workdir} step {step}), {config.sample.sampler} {a.steps} steps, "
           f"{a.num} held-out clips; centre error of each generated frame (px)", "",
           "| method | context | w_r | guidance | error per generated frame | mean | holding the last frame |",
           "|---|---|---|---|---|---|---|"]
  for r in results:
    fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)
    lines.append(f"| {r['method']} | {r['context']} | {r['recon_weight']:g} | {r['guidance']:g} | "
                 f"{fmt(r['per_frame'])} | {r['mean']:.2f} | {fmt(r['hold_per_frame'])} |")
  table = "\n".join(lines)
  print(table)
  report_lib.write(a.out_dir, "prediction_sweep", table, {"rows": results})


if __name__ == "__main__":
  main()
