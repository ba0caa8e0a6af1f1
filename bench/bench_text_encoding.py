"""One cascade sample, the prompt encoded once for every stage (the cascade) against once per
stage (how it was before session 16), with a T5-base-sized random encoder, in one run.

    python -m bench.bench_text_encoding [--preset base] [--repeats 3] [--batch 1]

The tiny cascade's four stages (configs/cascade_tiny.py, runlocal U-Nets, 4 steps each) with
random params and a random T5 of the given preset shared by all stages; both ways draw the
same samples (same seeds), so only the text encoder's work differs. Prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from imagen_video.cascade.cascade import Cascade
from imagen_video.stage.model import Stage
from imagen_video.stage.sampler import Defaults, Request, StageSampler
from imagen_video.text.encoder import TextEncoder
from imagen_video.utils import configs_loader

PROMPT = "a red circle moving left"


def build(preset: str, tokenizer: str) -> Cascade:
  listing = configs_loader.load("configs/cascade_tiny.py:runlocal")
  runs, text = [], None
  for i, entry in enumerate(listing.stages):
    config = configs_loader.load(entry["config"])
    with config.unlocked():
      config.text.preset, config.text.tokenizer, config.text.max_length = preset, tokenizer, 16
    text = text or TextEncoder.from_config(config.text)
    stage = Stage(config, text_encoder=text)
    params = {"unet": stage.init_params(jax.random.key(i))}
    runs.append(StageSampler(stage, params, name=entry["name"],
                             defaults=Defaults(entry["steps"], entry["sampler"], entry["guidance"],
                                               entry["aug_level"])))
  return Cascade(runs)


def per_stage(cascade: Cascade, request: Request) -> np.ndarray:
  """The old path: every stage tokenizes and encodes the prompt itself."""
  video = None
  for i, run in enumerate(cascade.runs):
    video = run.draw(request, text=run.encode(request.prompts), low_res=video, stream=i)
  return video


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="base")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--tokenizer", default="", help="a sentencepiece model (default: one trained here)")
  a = p.parse_args(argv)
  tokenizer = a.tokenizer
  if not tokenizer:
    import tempfile
    from imagen_video.data import moving_shapes as ms
    from imagen_video.text import tokenizer as tok
    import itertools
    caps = [ms.caption(c, s, d) for c, s, d in itertools.product(ms.COLORS, ms.SHAPES, ms.DIRECTIONS)]
    tokenizer = tok.train_sentencepiece(caps, tempfile.mktemp(suffix=".model"), 128)
  cascade = build(a.preset, tokenizer)
  text = cascade.runs[0].stage.text
  n_text = sum(int(np.size(x)) for x in jax.tree.leaves(text.params))
  request = Request(prompts=(PROMPT,) * a.batch, seed=0)
  calls = {"cascade": [], "per stage": []}
  real = TextEncoder.encode_with

  def counting(self, *args):
    calls[current].append(1)
    return real(self, *args)
  TextEncoder.encode_with = counting
  times = {k: [] for k in calls}
  outs = {}
  for r in range(a.repeats + 1):  # the first round compiles
    for current in ("cascade", "per stage"):
      calls[current].clear()
      t0 = time.perf_counter()
      out = cascade.sample(request, log=lambda *_: None).video if current == "cascade" else per_stage(cascade, request)
      jax.block_until_ready(out)
      if r:
        times[current].append(time.perf_counter() - t0)
      outs[current] = out
  same = float(np.abs(outs["cascade"] - outs["per stage"]).max())
  print(f"Cascade sample ({len(cascade.runs)} stages, runlocal U-Nets, batch {a.batch}), random T5-{a.preset} "
        f"({n_text / 1e6:.0f}M params) shared by the stages; median of {a.repeats} after one compiling round; "
        f"max |difference| of the two outputs {same:.2g}\n")
  print("| text encoding | encoder calls per sample | seconds (median) | vs per stage |")
  print("|---|---|---|---|")
  base = statistics.median(times["per stage"])
  for k in ("per stage", "cascade"):
    m = statistics.median(times[k])
    print(f"| {'once per stage (before)' if k == 'per stage' else 'once per cascade (now)'} | "
          f"{len(calls[k])} | {m:.2f} | {base / m:.2f}x |")


if __name__ == "__main__":
  main()
