"""CLIP score and CLIP R-Precision (the Imagen Video paper's text-video metrics) of samples.

Samples the captions of the first `num` held-out clips (the FVD setting) through a stage or a
cascade and scores them with a converted CLIP checkpoint (`--clip DIR`); the held-out clips
themselves are scored too, as the reference a model can approach. Writes clip_score.md/.json.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from imagen_video.eval import registry, sampling
from imagen_video.eval import report as report_lib

_SCORERS: dict = {}


def scorer(clip_dir: str):
  """One ClipScorer (and compilation) per checkpoint for the whole process."""
  from imagen_video.clip.scorer import ClipScorer
  key = os.path.abspath(clip_dir)
  if key not in _SCORERS:
    _SCORERS[key] = ClipScorer(clip_dir)
  return _SCORERS[key]


def table(rows: list[tuple[str, dict]]) -> str:
  lines = ["| videos | n | CLIP score | R-Precision | K |", "|---|---|---|---|---|"]
  for label, r in rows:
    rp = (f"{r['r_precision']:.1%} ± {r['r_precision_se']:.1%}" if "r_precision" in r else "")
    lines.append(f"| {label} | {r['num']} | {r['clip_score']:.2f} ± {r['clip_score_se']:.2f} | {rp} | "
                 f"{r.get('k', '')} |")
  return "\n".join(lines)


@registry.register("clip_score")
@dataclasses.dataclass
class ClipScore(registry.Evaluator):
  """CLIP score (100 x cosine per frame, floored at 0, frame- then video-mean) and R-Precision
  at K of samples for the first `num` held-out captions, beside the held-out clips' own."""
  clip: str = registry.option("", "clip_score: CLIP checkpoint from `imagen-video convert-clip`")
  num: int = registry.option(100, "clip_score: held-out clips whose captions are sampled")
  k: int = registry.option(100, "clip_score: R-Precision candidates (1 true + K-1 other captions "
                           "of the set, capped by how many distinct captions there are)")
  seed: int = registry.option(0, "seed of the first sample (sample i of the run: seed + i)")
  batch: int = registry.option(16, "videos sampled together")

  def run(self, sampler, out_dir: str, log=print) -> dict:
    from imagen_video.data import held_out
    from imagen_video.media import video_io
    if not self.clip:
      raise ValueError("clip_score: give --clip DIR (a checkpoint from `imagen-video convert-clip`)")
    clip = scorer(self.clip)
    clips = held_out.clips(sampler.config, self.num)
    caps = clips["caption"]
    fake = sampling.uint8(sampling.draw(sampler, caps, seed=self.seed, batch=self.batch)[0])
    result = clip.score(fake, caps, k=self.k, seed=self.seed)
    real = clip.score(video_io.to_uint8(clips["video"], (0.0, 1.0)), caps, k=self.k, seed=self.seed)
    label = registry.describe(sampler)
    report = (f"CLIP score / R-Precision ({self.clip}) of {label} against held-out "
              f"{sampler.config.data.name} captions\n\n" + table([("generated", result), ("held-out clips", real)]))
    log(report)
    strip = lambda r: {k: v for k, v in r.items() if k != "hits"}
    report_lib.write(out_dir, "clip_score", report, {"label": label, "clip": self.clip, "seed": self.seed,
                                                     "generated": strip(result), "held_out": strip(real)})
    return {**result, "held_out": real}

  def scalars(self, result) -> dict[str, float]:
    return {k: float(result[k]) for k in ("clip_score", "r_precision") if k in result}


def measure(clip_dir: str, videos: np.ndarray, captions: list[str], k: int = 100, seed: int = 0) -> dict:
  """{clip_score, clip_score_se, r_precision, r_precision_se} of uint8 videos (ablations, benches)."""
  r = scorer(clip_dir).score(videos, captions, k=k, seed=seed)
  return {key: r[key] for key in ("clip_score", "clip_score_se", "r_precision", "r_precision_se") if key in r}
