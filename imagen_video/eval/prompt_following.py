"""Does a text-to-video model follow `moving_shapes` prompts? (caption check on samples)

All 28 color x direction prompts of the grammar, `num` samples each (shapes
cycle through the three), classified from pixels by `caption_check`.
"""
from __future__ import annotations

import itertools

import numpy as np

from imagen_video.data import moving_shapes as ms
from imagen_video.eval import caption_check


def grammar_prompts(num: int) -> list[str]:
  """28 color x direction prompts, each repeated `num` times with cycling shapes."""
  out = []
  for k, (color, direction) in enumerate(itertools.product(ms.COLORS, ms.DIRECTIONS)):
    for i in range(num):
      out.append(ms.caption(color, ms.SHAPES[(k + i) % len(ms.SHAPES)], direction))
  return out


def evaluate(sample_fn, prompts: list[str], batch: int = 28) -> dict:
  """`sample_fn(prompts) -> uint8 [B, T, H, W, 3]`; returns caption_check.score + videos."""
  calls = []
  for i in range(0, len(prompts), batch):
    chunk = prompts[i:i + batch]
    calls.append(np.asarray(sample_fn(chunk + [chunk[-1]] * (batch - len(chunk)))))  # one batch size
  videos = unpad(calls, len(prompts))
  result = caption_check.score(list(videos), prompts)
  result["videos"] = videos
  return result


def unpad(calls: list[np.ndarray], n: int) -> np.ndarray:
  """The padded batches of `evaluate`'s calls, joined and cut to the `n` prompts."""
  return np.concatenate(calls)[:n]


def table(result: dict) -> str:
  """Markdown: accuracy overall and per color x direction."""
  acc = result["accuracy"]
  lines = ["| metric | accuracy |", "|---|---|"]
  lines += [f"| {k} | {v:.1%} |" for k, v in acc.items()]
  per = {}
  for row in result["rows"]:
    color, _, direction = ms.parse_caption(row["caption"])
    per.setdefault((color, direction), []).append(row["color_direction"])
  lines += ["", "| color \\ direction | " + " | ".join(ms.DIRECTIONS) + " |",
            "|---|" + "---|" * len(ms.DIRECTIONS)]
  for color in ms.COLORS:
    cells = [f"{np.mean(per.get((color, d), [np.nan])):.0%}" for d in ms.DIRECTIONS]
    lines.append(f"| {color} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def stage_table(names: list[str], per_call: list[list[np.ndarray]], prompts: list[str]) -> str:
  """Markdown: color / direction / both accuracy of every cascade stage's output.

  `per_call[i][s]` is stage s's uint8 output for the i-th padded batch of `evaluate`."""
  lines = ["| stage | output | color | direction | color + direction |", "|---|---|---|---|---|"]
  for s, name in enumerate(names):
    videos = unpad([call[s] for call in per_call], len(prompts))
    acc = caption_check.score(list(videos), prompts)["accuracy"]
    shape = "x".join(map(str, videos[0].shape[:3]))
    lines.append(f"| {name} | {shape} | {acc['color']:.1%} | {acc['direction']:.1%} | "
                 f"{acc['color_direction']:.1%} |")
  return "\n".join(lines)
