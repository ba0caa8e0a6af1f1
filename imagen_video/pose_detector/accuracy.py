"""The detector's own error on ground-truth `athletes` renderings (the floor of the
pose-following error); `python -m imagen_video.pose_detector.accuracy` trains or loads one
and prints it."""
from __future__ import annotations

import argparse
import time

import numpy as np

from imagen_video.data import athletes
from imagen_video.pose.skeleton import NUM_KEYPOINTS
from imagen_video.pose_detector.model import Detector, distances
from imagen_video.pose_detector.train import load_or_train


def renderings(height: int, width: int, clips: int = 64, frames: int = 16, split: str = "test",
                    seed: int = 0) -> dict:
  """GT renderings uint8 [clips, frames, H, W, 3] with keypoints and visibility."""
  cs = [athletes.sample_clip(seed, split, i, width / height) for i in range(clips)]
  video = np.stack([athletes.render(c, frames, height, width) for c in cs])
  kv = [c.keypoints(frames) for c in cs]
  return {"video": video, "keypoints": np.stack([k for k, _ in kv]),
          "visibility": np.stack([v for _, v in kv])}


def keypoint_errors(pred, keypoints, visibility, height: int, width: int) -> dict:
  """Mean distance (frame heights) over visible joints, PCK@0.05 / @0.1, and per joint."""
  d = distances(pred, keypoints, height, width)
  vis = np.asarray(visibility) > 0
  dv = d[vis]
  joint = [float(d[..., j][vis[..., j]].mean()) if vis[..., j].any() else float("nan")
           for j in range(NUM_KEYPOINTS)]
  return {"mean_distance": float(dv.mean()), "median_distance": float(np.median(dv)),
          "pck@0.05": float((dv < 0.05).mean()), "pck@0.1": float((dv < 0.1).mean()),
          "per_joint_distance": joint}


def evaluate(detector: Detector, clips: int = 64, frames: int = 16, split: str = "test",
             seed: int = 0) -> dict:
  """The detector's error on ground-truth renderings (the floor of pose-following error)."""
  h, w = detector.config.height, detector.config.width
  data = renderings(h, w, clips, frames, split, seed)
  out = keypoint_errors(detector.predict(data["video"]), data["keypoints"], data["visibility"], h, w)
  out.update(clips=clips, frames=frames, split=split, seed=seed)
  return out


def main(argv=None):
  from imagen_video.pose.skeleton import KEYPOINTS
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--height", type=int, default=32)
  p.add_argument("--width", type=int, default=32)
  p.add_argument("--out", required=True, help="detector .npz (loaded if it exists)")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--batch", type=int, default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--eval_clips", type=int, default=64)
  p.add_argument("--eval_frames", type=int, default=16)
  a = p.parse_args(argv)
  kw = {k: v for k, v in (("steps", a.steps), ("batch", a.batch)) if v is not None}
  t = time.time()
  det = load_or_train(a.out, a.height, a.width, seed=a.seed, **kw)
  print(f"[pose_detector] ready in {time.time() - t:.0f} s")
  t = time.time()
  r = evaluate(det, a.eval_clips, a.eval_frames)
  print(f"[pose_detector] test split, {a.eval_clips} clips x {a.eval_frames} frames "
        f"({time.time() - t:.0f} s): mean distance {r['mean_distance']:.4f} frame heights "
        f"({r['mean_distance'] * a.height:.2f} px), median {r['median_distance']:.4f}, "
        f"PCK@0.05 {r['pck@0.05']:.1%}, PCK@0.1 {r['pck@0.1']:.1%}")
  print("[pose_detector] per joint: " + ", ".join(
      f"{n} {d:.3f}" for n, d in zip(KEYPOINTS, r["per_joint_distance"])))


if __name__ == "__main__":
  main()
