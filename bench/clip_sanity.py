"""CLIP score sanity on the clips available here: matched vs shuffled captions.

    python -m bench.clip_sanity [--clip CKPT_DIR] [--num 32] [--frames 8] [--size 96] [--out TABLE.md]

Renders the first --num test clips of texture_pans (pans/zooms over real photographs) and
athletes, scores each against its own caption and against another clip's caption (a
derangement), and reports CLIP score (± SE), the paired difference (± SE) and R-Precision.
Without --clip a randomly initialised CLIP of the OpenAI ViT-B/32 shape (224 px, BPE learnt
from the captions) is used: no separation is expected, and the code path is the one a
converted real checkpoint runs.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from imagen_video.clip import checkpoint, metrics
from imagen_video.clip.model import ClipConfig
from imagen_video.clip.scorer import ClipScorer


def clips(name: str, num: int, frames: int, size: int):
  from imagen_video.data import athletes, texture_pans
  module = {"texture_pans": texture_pans, "athletes": athletes}[name]
  out = [module.sample_clip(0, "test", i) for i in range(num)]
  return np.stack([module.render(c, frames, size, size) for c in out]), [c.caption for c in out]


def derangement(n: int, captions: list[str], seed: int) -> list[int]:
  """A permutation giving every clip a caption other than its own (when one exists)."""
  rng = np.random.default_rng(seed)
  while True:
    p = rng.permutation(n)
    if all(captions[p[i]] != captions[i] for i in range(n)) or len(set(captions)) < 2:
      return list(p)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--clip", default=None)
  p.add_argument("--num", type=int, default=32)
  p.add_argument("--frames", type=int, default=8)
  p.add_argument("--size", type=int, default=96)
  p.add_argument("--k", type=int, default=100)
  p.add_argument("--out", default=None, help="also write the table (markdown) here")
  a = p.parse_args()
  data = {name: clips(name, a.num, a.frames, a.size) for name in ("texture_pans", "athletes")}
  ckpt, what = a.clip, a.clip
  if ckpt is None:
    ckpt = os.path.join(tempfile.mkdtemp(), "random_clip")
    texts = [c for _, caps in data.values() for c in caps]
    checkpoint.save_random(ckpt, ClipConfig(), texts, merges=400, seed=0)
    what = "randomly initialised CLIP, OpenAI ViT-B/32 shape (224 px), BPE learnt from the captions"
  scorer = ClipScorer(ckpt)
  lines = [f"CLIP: {what}; {a.num} test clips per dataset, {a.frames} frames at {a.size}x{a.size} "
           "(resized to 224 and centre-cropped by the CLIP preprocessing)", "",
           "| clips | captions | CLIP score ± SE | R-Precision ± SE (K) | matched - shuffled (paired) ± SE |",
           "|---|---|---|---|---|"]
  for name, (videos, caps) in data.items():
    t0 = time.time()
    perm = derangement(len(caps), caps, seed=0)
    shuffled = [caps[i] for i in perm]
    frames = scorer.embed_videos(videos)  # once for both captionings
    m = scorer.score_embedded(frames, caps, k=a.k)
    s = scorer.score_embedded(frames, shuffled, k=a.k)
    diff = np.asarray(m["scores"]) - np.asarray(s["scores"])
    d_mean, d_se = metrics.mean_se(diff)
    for label, r in (("matched", m), ("shuffled", s)):
      extra = f"{d_mean:+.3f} ± {d_se:.3f}" if label == "matched" else ""
      lines.append(f"| {name} | {label} | {r['clip_score']:.3f} ± {r['clip_score_se']:.3f} | "
                   f"{r['r_precision']:.1%} ± {r['r_precision_se']:.1%} ({r['k']}) | {extra} |")
    print(f"[clip_sanity] {name}: {time.time() - t0:.0f} s", flush=True)
  table = "\n".join(lines)
  print(table)
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  main()
