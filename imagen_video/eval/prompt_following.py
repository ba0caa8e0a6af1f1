"""Does a text-to-video model follow `moving_shapes` prompts? (caption check on samples)

All 28 color x direction prompts of the grammar, `num` samples each (shapes
cycle through the three), classified from pixels by `caption_check`.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import time

import numpy as np

from imagen_video.data import moving_shapes as ms
from imagen_video.eval import caption_check, registry, sampling
from imagen_video.eval import report as report_lib


def grammar_prompts(num: int) -> list[str]:
  """28 color x direction prompts, each repeated `num` times with cycling shapes."""
  out = []
  for k, (color, direction) in enumerate(itertools.product(ms.COLORS, ms.DIRECTIONS)):
    for i in range(num):
      out.append(ms.caption(color, ms.SHAPES[(k + i) % len(ms.SHAPES)], direction))
  return out


def evaluate(videos, prompts: list[str]) -> dict:
  """caption_check.score of uint8 videos [N, T, H, W, 3] for the prompts, with the videos."""
  result = caption_check.score(list(videos), prompts)
  result["videos"] = np.asarray(videos)
  return result


def table(result: dict) -> str:
  """Markdown: accuracy overall and per color x direction."""
  acc = result["accuracy"]
  lines = ["| metric | accuracy |", "|---|---|"]
  lines += [f"| {k} | {pct(v, result['count'])} |" for k, v in acc.items()]
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


def pct(p: float, n: int) -> str:
  """A rate with its binomial standard error, e.g. '93.8 ± 2.3%'."""
  return f"{p:.1%} ± {np.sqrt(p * (1 - p) / n) * 100:.1f}"


@functools.cache  # deterministic per size: one pass however many tables ask
def data_cleanliness(frames: int, height: int, width: int, num: int = 32) -> tuple[float, float]:
  """`caption_check.cleanliness` of `num` held-out `moving_shapes` clips rendered at that size."""
  clips = [ms.sample_clip(0, "test", i, aspect=width / height) for i in range(num)]
  return caption_check.cleanliness(caption_check.score(
      [ms.render(c, frames, height, width) for c in clips], [c.caption for c in clips]))


def stage_table(stages: list[tuple[str, np.ndarray]], prompts: list[str]) -> str:
  """Markdown: color / shape / direction accuracy (± binomial SE) and the cleanliness
  figures of every cascade stage's output beside the data's own clips at that size
  (`stages`: (name, float videos in [-1, 1]) for all the prompts)."""
  lines = ["| stage | output | color | shape | direction | color + direction | all three | "
           "background grey level (data) | edge width px (data) |", "|---|" + "---|" * 8]
  n = len(prompts)
  for name, video in stages:
    videos = sampling.uint8(video)
    result = caption_check.score(list(videos), prompts)
    acc = result["accuracy"]
    size = videos[0].shape[:3]
    bg, edge = caption_check.cleanliness(result)
    data_bg, data_edge = data_cleanliness(*size)
    lines.append(f"| {name} | {'x'.join(map(str, size))} | " + " | ".join(
        pct(acc[k], n) for k in ("color", "shape", "direction", "color_direction", "all"))
        + f" | {bg:.1f} ({data_bg:.1f}) | {edge:.2f} ({data_edge:.2f}) |")
  return "\n".join(lines)


@registry.register("caption")
@dataclasses.dataclass
class Caption(registry.Evaluator):
  """The 28 colour x direction prompts (`num` samples each, shapes cycling) classified from
  pixels; for a cascade also every stage's output. Writes caption_eval.md/.json/.png."""
  num: int = registry.option(4, "caption: samples per prompt (28 prompts, shapes cycling)")
  seed: int = registry.option(0, "seed of the first sample (sample i of the run: seed + i)")
  batch: int = registry.option(28, "prompts sampled together (lower it to save memory)")

  def run(self, sampler, out_dir: str, log=print) -> dict:
    from imagen_video.media import contact_sheet
    t0 = time.time()
    prompts = grammar_prompts(self.num)
    final, stages = sampling.draw(sampler, prompts, seed=self.seed, batch=self.batch)
    result = evaluate(sampling.uint8(final), prompts)
    seconds = time.time() - t0
    report = table(result)
    if stages:  # for a cascade: where along it the prompt is lost
      report += "\n\n" + stage_table(stages, prompts)
    label = registry.describe(sampler)
    shape = "x".join(map(str, result["videos"][0].shape[:3]))
    log(f"caption check: {label}; {len(prompts)} samples of {shape}, {seconds:.0f} s\n{report}")
    summary = {"label": label, "accuracy": result["accuracy"], "samples": len(prompts),
               "shape": shape, "seconds": seconds, "seed": self.seed}
    if report_lib.write(out_dir, "caption_eval", f"{label}; {len(prompts)} samples of {shape} "
                        f"(frames x height x width)\n\n{report}", summary):
      first = [result["videos"][i] for i in range(0, len(prompts), self.num)]  # one per prompt
      caps = [f"{p} -> {r['pred_color']}/{r['pred_shape']}/{r['pred_direction']}"
              for p, r in zip(prompts[::self.num], result["rows"][::self.num])]
      contact_sheet.contact_sheet(first, caps, os.path.join(out_dir, "caption_eval.png"),
                                  title=f"{label}: color+direction {result['accuracy']['color_direction']:.0%}, "
                                        f"shape {result['accuracy']['shape']:.0%}")
    return result

  def scalars(self, result) -> dict[str, float]:
    return dict(result["accuracy"])
