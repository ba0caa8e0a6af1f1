"""`imagen-video eval --metric pose`: pose-guided samples of held-out pose sequences against
their ground truth, and the same model sampled without pose.

For the first `num` test clips of the (last) stage's dataset (for `athletes` the (exercise,
body type) pairs never seen together in training), samples each caption with the clip's
keypoints and without them (same seeds), and scores both with `pose_following.pose_scores`
(PSNR/SSIM against the clip, pose error of a keypoint detector on the samples). Writes
pose_eval.md / .json (per-clip scores) / .png (pose | with pose | without pose | truth).
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from imagen_video.data import held_out
from imagen_video.eval import pose_following, registry, sampling
from imagen_video.pose_detector import train as detector_train


def test_clips(config, num: int) -> dict:
  """The first `num` test clips of `config.data` (`data.held_out.clips`): video uint8
  [N, T, H, W, 3], captions, keypoints [N, T, 17, 2], visibility [N, T, 17]."""
  clips = held_out.clips(config, num)
  if "keypoints" not in clips or "visibility" not in clips:
    raise ValueError(f"{config.data.name} examples have no 'keypoints'/'visibility': the pose metric "
                     "needs a dataset with poses (e.g. athletes)")
  return {"video": np.round(clips["video"] * 255).astype(np.uint8), "captions": clips["caption"],
          "keypoints": clips["keypoints"].astype(np.float32),
          "visibility": clips["visibility"].astype(np.float32)}


def evaluate(sampler, *, num: int, seed: int, batch: int, out_dir: str,
             detector_path: str | None = None, sheet_examples: int = 6, log=print) -> dict:
  """A `StageSampler` or `Cascade` (its last stage's config: dataset and size) sampled with the
  held-out poses and without (same seeds). Returns {name: pose_scores}."""
  config = sampler.config
  clips = test_clips(config, num)
  n, t, h, w, _ = clips["video"].shape
  os.makedirs(out_dir, exist_ok=True)
  detector = detector_train.load_or_train(
      detector_path or os.path.join(out_dir, f"pose_detector_{h}x{w}.npz"), h, w, log=log)
  with_pose = lambda i0, i1: {"pose": (clips["keypoints"][i0:i1], clips["visibility"][i0:i1])}
  videos = {"with pose": sampling.draw(sampler, clips["captions"], seed=seed, batch=batch, log=log,
                                       per_prompt=with_pose)[0],
            "without pose": sampling.draw(sampler, clips["captions"], seed=seed, batch=batch, log=log)[0]}
  videos = {k: sampling.uint8(v) for k, v in videos.items()}
  label = registry.describe(sampler)
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
    json.dump({"label": label, "captions": clips["captions"], "seed": seed,
               "scores": {m: {k2: np.asarray(v).tolist() for k2, v in r.items()}
                          for m, r in results.items()}}, f)
  log(table)
  log(f"wrote {out_dir}/pose_eval.md, .json, .png")
  return results


@registry.register("pose")
@dataclasses.dataclass
class Pose(registry.Evaluator):
  """Pose-guided samples of held-out pose sequences against their clips, and the same model
  without pose: PSNR/SSIM and a keypoint detector's pose error. Writes pose_eval.md/.json/.png."""
  num: int = registry.option(32, "pose: held-out clips")
  seed: int = registry.option(0, "seed of the first sample (clip i: seed + i)")
  batch: int = registry.option(8, "clips sampled together")
  detector: str = registry.option(None, "pose: keypoint detector file (default OUT_DIR/"
                                  "pose_detector_HxW.npz, trained there if missing)")

  def run(self, sampler, out_dir: str, log=print) -> dict:
    return evaluate(sampler, num=self.num, seed=self.seed, batch=self.batch, out_dir=out_dir,
                    detector_path=self.detector, log=log)


def _describe(info: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in info.items()) or "(no training record)"
