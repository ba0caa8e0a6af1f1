"""Evaluators' samples: one sampler call per fixed-size batch (one compilation), through the
same `Request` and seed rule as `imagen-video sample` (prompt i of a run gets seed + i)."""
from __future__ import annotations

import time

import numpy as np

from imagen_video.media import video_io
from imagen_video.stage.sampler import Request


def draw(sampler, prompts, *, seed: int, batch: int, log=None, per_prompt=None, **fields):
  """(final float videos [N, T, H, W, 3] in [-1, 1], [(stage name, float videos)]) for the
  prompts; `per_prompt(i0, i1)` may add Request fields for prompts i0..i1 (e.g. their pose)."""
  prompts = list(prompts)
  final, stages = [], []
  t0 = time.time()
  for i in range(0, len(prompts), batch):
    chunk = prompts[i:i + batch]
    pad = batch - len(chunk) if len(prompts) > batch else 0  # every call the same batch size
    extra = per_prompt(i, i + len(chunk)) if per_prompt else {}
    extra = {k: _pad(v, pad) for k, v in extra.items()}
    r = Request(prompts=tuple(chunk + chunk[-1:] * pad), seed=seed + i, **fields, **extra)
    out = sampler.sample(r)
    final.append(out.video[:len(chunk)])
    stages.append([(name, v[:len(chunk)]) for name, v in out.stages])
    if log:
      done = i + len(chunk)
      rate = (time.time() - t0) / done
      log(f"[eval] {done}/{len(prompts)} samples, "
          f"{rate:.2f} s each, ETA {rate * (len(prompts) - done):.0f} s")
  joined = [(name, np.concatenate([s[k][1] for s in stages])) for k, (name, _) in enumerate(stages[0])]
  return np.concatenate(final), joined


def _pad(value, pad: int):
  """A per-prompt field padded like the prompts (its last row repeated)."""
  if not pad or value is None:
    return value
  if isinstance(value, tuple):
    return tuple(_pad(v, pad) for v in value)
  value = np.asarray(value)
  return np.concatenate([value, np.repeat(value[-1:], pad, axis=0)])


def uint8(video) -> np.ndarray:
  return video_io.to_uint8(np.asarray(video))

