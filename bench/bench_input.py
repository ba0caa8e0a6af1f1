"""Input throughput per paper stage: bytes per stored clip and decode rate per host core,
against what each stage consumes per host when it trains at 50% MFU on v5p-128.

    python -m bench.bench_input [--format jpeg --quality 90] [--seconds 3] [--out bench/input.json]

For each stage of configs/imagen_video_paper.py, a training example is what the input
pipeline hands the train step: the stage's frames (a 16-frame window for the windowed
stages) at its stored size, cropped where the stage trains on crops, plus its low-res
input. Frames are real texture (camera pans over scikit-image's photographs,
`data.texture_pans`), encoded per frame as PNG or JPEG like a prepared `video_folder`.
One core decodes, crops and normalises examples for --seconds; the table gives
bytes per example, examples/s per core, the stage's need per host (global batch / step
time at 50% MFU from docs/aot_paper.md's compiled FLOPs, over 16 hosts of 4 chips), and
the host cores that need takes.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import time

import numpy as np
from PIL import Image

# docs/aot_paper.md: v5p-128 (64 chips, 16 hosts), global batch and step time at 50% MFU.
HOSTS = 16
STEP_50 = {"base": (512, 1.5281), "tsr1": (256, 0.3734), "ssr1": (256, 0.8650),
           "ssr2": (64, 0.7053), "tsr2": (64, 0.4014)}


def stored_clips(frames: int, height: int, width: int, count: int = 4, seed: int = 0) -> list[np.ndarray]:
  """Real-texture clips uint8 [frames, height, width, 3]: pans over the bundled photographs."""
  from imagen_video.data import texture_pans as tp
  out = []
  for i in range(count):
    clip = tp.sample_clip(seed, "train", i, width / height)
    out.append(tp.render(clip, frames, height, width))
  return out


def encode(clip: np.ndarray, fmt: str, quality: int) -> list[bytes]:
  out = []
  for frame in clip:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG" if fmt == "jpeg" else "PNG",
                                **({"quality": quality} if fmt == "jpeg" else {}))
    out.append(buf.getvalue())
  return out


def decode_example(frames: list[bytes], low: list[bytes], crop, rng) -> dict:
  """What a worker does per example: decode, crop (same place in the low-res), normalise."""
  video = np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames])
  small = np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in low]) if low else None
  if crop:
    h, w = video.shape[1:3]
    top, left = rng.integers(0, h - crop[0] + 1), rng.integers(0, w - crop[1] + 1)
    video = video[:, top:top + crop[0], left:left + crop[1]]
    if small is not None:
      fh, fw = h // small.shape[1], w // small.shape[2]
      small = small[:, top // fh:(top + crop[0]) // fh, left // fw:(left + crop[1]) // fw]
  out = {"video": video.astype(np.float32) / 127.5 - 1}
  if small is not None:
    out["low"] = small.astype(np.float32) / 127.5 - 1
  return out


def stage_rows(fmt: str, quality: int, seconds: float) -> list[dict]:
  from imagen_video.utils import configs_loader
  paper = configs_loader.load_module("configs/imagen_video_paper.py")
  rows, prev = [], None
  for s in paper.STAGES:
    frames = s.window or s.frames
    low = None
    if prev is not None:  # the previous stage's output, cut to the same window
      low = (prev.frames * frames // s.frames, prev.height, prev.width)
    clips = stored_clips(frames, s.height, s.width)
    lows = stored_clips(*low) if low else [None] * len(clips)
    encoded = [(encode(c, fmt, quality), encode(lw, fmt, quality) if lw is not None else [])
               for c, lw in zip(clips, lows)]
    nbytes = float(np.mean([sum(map(len, a)) + sum(map(len, b)) for a, b in encoded]))
    rng = np.random.default_rng(0)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done < 2:
      frames_b, low_b = encoded[done % len(encoded)]
      decode_example(frames_b, low_b, s.crop, rng)
      done += 1
    rate = done / (time.perf_counter() - t0)
    need = None
    if s.name in STEP_50:
      batch, step = STEP_50[s.name]
      need = batch / step / HOSTS
    rows.append({"stage": s.name, "example": f"{frames}x{s.height}x{s.width}"
                 + (f" crop {s.crop[0]}x{s.crop[1]}" if s.crop else "")
                 + (f" + low {low[0]}x{low[1]}x{low[2]}" if low else ""),
                 "bytes_per_example": nbytes, "examples_per_s_per_core": rate,
                 "need_per_host": need, "cores_per_host": None if need is None else need / rate})
    prev = s
  return rows


def markdown(rows, fmt, quality) -> str:
  lines = [f"Input pipeline per example, frames stored as {fmt}" + (f" q{quality}" if fmt == "jpeg" else "")
           + f"; need: global batch / step time at 50% MFU on v5p-128, over {HOSTS} hosts", "",
           "| stage | example | KiB / example | examples/s per core | need per host (ex/s) | host cores needed |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    need = f"{r['need_per_host']:.1f}" if r["need_per_host"] else "(not compiled)"
    cores = f"{math.ceil(r['cores_per_host'] * 10) / 10:.1f}" if r["cores_per_host"] else ""
    lines.append(f"| {r['stage']} | {r['example']} | {r['bytes_per_example'] / 1024:.1f} | "
                 f"{r['examples_per_s_per_core']:.2f} | {need} | {cores} |")
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--format", choices=("png", "jpeg"), default=None, help="default: both")
  p.add_argument("--quality", type=int, default=90)
  p.add_argument("--seconds", type=float, default=3.0, help="decode time per stage")
  p.add_argument("--out", default=None, help="write the rows as JSON here")
  a = p.parse_args(argv)
  results = {}
  for fmt in ([a.format] if a.format else ["jpeg", "png"]):
    rows = stage_rows(fmt, a.quality, a.seconds)
    results[fmt] = rows
    print(markdown(rows, fmt, a.quality), "\n", flush=True)
  if a.out:
    with open(a.out, "w") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  main()
