"""`imagen-video eval --metric pose`: pose-guided samples of held-out pose sequences against
their ground truth, and the same model sampled without pose.

For the first `num` test clips of the (last) stage's dataset (for `athletes` the (exercise,
body type) pairs never seen together in training), samples each caption with the clip's
keypoints and without them (same seeds), and scores both with `pose_following.pose_scores`
(PSNR/SSIM against the clip, pose error of a keypoint detector on the samples). Writes
pose_eval.md / .json (per-clip scores) / .png (pose | with pose | without pose | truth).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from imagen_video.eval import pose_detector, pose_following, sr_psnr


def test_clips(config, num: int) -> dict:
  """The first `num` test clips of `config.data` (`sr_psnr.test_clips`): video uint8
  [N, T, H, W, 3], captions, keypoints [N, T, 17, 2], visibility [N, T, 17]."""
  clips = sr_psnr.test_clips(config, num)
  if "keypoints" not in clips or "visibility" not in clips:
    raise ValueError(f"{config.data.name} examples have no 'keypoints'/'visibility': the pose metric "
                     "needs a dataset with poses (e.g. athletes)")
  return {"video": np.round(clips["video"] * 255).astype(np.uint8), "captions": clips["caption"],
          "keypoints": clips["keypoints"].astype(np.float32),
          "visibility": clips["visibility"].astype(np.float32)}


def evaluate(generate, config, *, num: int, seed: int, batch: int, out_dir: str, label: str,
             detector_path: str | None = None, sheet_examples: int = 6, log=print) -> dict:
  """`generate(prompts, seed, pose=None) -> (uint8 videos, stages)`; `config` the final
  stage's config (its dataset and size). Returns {name: pose_scores}."""
  clips = test_clips(config, num)
  n, t, h, w, _ = clips["video"].shape
  os.makedirs(out_dir, exist_ok=True)
  detector = pose_detector.load_or_train(
      detector_path or os.path.join(out_dir, f"pose_detector_{h}x{w}.npz"), h, w, log=log)
  videos = {"with pose": [], "without pose": []}
  t0 = time.time()
  for start in range(0, n, batch):
    sl = slice(start, min(start + batch, n))
    prompts = clips["captions"][sl]
    pose = (clips["keypoints"][sl], clips["visibility"][sl])
    videos["with pose"].append(generate(prompts, seed + start, pose=pose)[0])
    videos["without pose"].append(generate(prompts, seed + start)[0])
    done = sl.stop
    rate = (time.time() - t0) / done
    log(f"[pose eval] {done}/{n} clips, {rate:.1f} s/clip, ETA {rate * (n - done):.0f} s")
  videos = {k: np.concatenate(v) for k, v in videos.items()}
  results = {name: pose_following.pose_scores(v, clips["video"], clips["keypoints"],
                                              clips["visibility"], detector)
             for name, v in videos.items()}
  table = pose_following.report_table(results, ("with pose", "without pose"))
  k = min(sheet_examples, n)
  pose_following.side_by_side_sheet(
      os.path.join(out_dir, "pose_eval.png"), clips["keypoints"][:k], clips["visibility"][:k],
      {"generated with pose": videos["with pose"][:k], "generated without pose": videos["without pose"][:k],
       "ground truth": clips["video"][:k]}, clips["captions"][:k], title=label)
  with open(os.path.join(out_dir, "pose_eval.md"), "w") as f:
    f.write(f"# Pose following: {label}\n\n{n} held-out test clips ({config.data.name}), "
            f"{t}x{h}x{w}; keypoint detector: {_describe(getattr(detector, 'info', {}))}.\n\n{table}\n\n![sheet](pose_eval.png)\n")
  with open(os.path.join(out_dir, "pose_eval.json"), "w") as f:
    json.dump({"label": label, "captions": clips["captions"],
               "scores": {m: {k2: np.asarray(v).tolist() for k2, v in r.items()}
                          for m, r in results.items()}}, f)
  log(table)
  log(f"wrote {out_dir}/pose_eval.md, .json, .png")
  return results


def _describe(info: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in info.items()) or "(no training record)"
