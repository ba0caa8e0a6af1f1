"""Quality against time of samplers and step counts (and distilled students) for one stage.

    python -m bench.sampler_quality --config "configs/cascade_tiny.py:stage=base,root=R,data_dir=D" \
        --workdir R/base --rows ddim:128,ddim:64,ddim:16,dpm++2m:16,dpm++2m:25 \
        [--rows ...,ddim:8@DISTILLED_WORKDIR] [--num 2] [--fvd_num 64] [--clip CLIP_DIR] --out_dir DIR

Each row SAMPLER:STEPS[@WORKDIR] (default the --workdir) is scored by the caption check
(all 28 color x direction prompts, --num each) and FVD against the first --fvd_num held-out
clips; time = seconds to sample one batch of 28 prompts after compiling, ratio against the
first row (measured in the same run). With --clip (a `convert-clip` checkpoint) the caption
check's samples also get CLIP score and R-Precision (K = min(100, distinct prompts)). Writes DIR/sampler_quality.md/.json and each row's
caption/FVD reports in DIR/ROW/.
"""
from __future__ import annotations

import argparse
import os
import time

from imagen_video.cli import flags_util
from imagen_video.eval import prompt_following, registry
from imagen_video.eval import report as report_lib
from imagen_video.stage.sampler import Request, StageSampler


def parse_rows(text: str, workdir: str) -> list[tuple[str, int, str]]:
  rows = []
  for item in text.split(","):
    spec, _, wd = item.partition("@")
    sampler, _, steps = spec.partition(":")
    if not steps.isdigit():
      raise SystemExit(f"--rows item {item!r}: expected SAMPLER:STEPS[@WORKDIR]")
    rows.append((sampler, int(steps), wd or workdir))
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--rows", default="ddim:128,ddim:64,ddim:16,dpm++2m:16,dpm++2m:25")
  p.add_argument("--guidance", type=float, default=None)
  p.add_argument("--num", type=int, default=2, help="caption check samples per prompt")
  p.add_argument("--fvd_num", type=int, default=64, help="0: skip FVD (caption check only)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--clip", default=None, help="CLIP checkpoint: adds CLIP score / R-Precision columns")
  p.add_argument("--out_dir", required=True)
  a = p.parse_args()
  config = flags_util.load_config(a.config)
  guidance = config.sample.guidance if a.guidance is None else a.guidance
  prompts = prompt_following.grammar_prompts(1)
  results = []
  for sampler, steps, workdir in parse_rows(a.rows, a.workdir):
    name = f"{sampler}_{steps}" + ("" if workdir == a.workdir else "_" + os.path.basename(workdir.rstrip("/")))
    if any(r["row"] == name for r in results):  # students of two runs share a phase name
      name += f"_{len(results)}"
    stage = StageSampler.load(workdir, config=config, steps=steps, guidance=guidance, sampler=sampler)
    stage.sample(Request(prompts=tuple(prompts), seed=a.seed))  # compile
    t0 = time.time()
    stage.sample(Request(prompts=tuple(prompts), seed=a.seed + 1))
    seconds = time.time() - t0
    out = os.path.join(a.out_dir, name)
    cap = registry.build("caption", num=a.num, seed=a.seed).run(stage, out)
    fvd = {"fvd": float("nan")}
    if a.fvd_num:
      fvd = registry.build("fvd", num=a.fvd_num, seed=a.seed, batch=32).run(stage, out)
    clip = {}
    if a.clip:
      from imagen_video.eval import clip_score
      clip = clip_score.measure(a.clip, cap["videos"], prompt_following.grammar_prompts(a.num), seed=a.seed)
    results.append({"row": name, "sampler": sampler, "steps": steps, "workdir": workdir,
                    "seconds_per_28": seconds, "accuracy": cap["accuracy"], "fvd": fvd["fvd"], **clip})
    print(f"[sampler_quality] {name}: {seconds:.2f} s / 28 samples, color+direction "
          f"{cap['accuracy']['color_direction']:.0%}, FVD {fvd['fvd']:.1f}", flush=True)
  first = results[0]["seconds_per_28"]
  lines = [f"Sampler quality: {a.config} ({a.workdir}), guidance {guidance:g}; caption check "
           f"{28 * a.num} samples, FVD {a.fvd_num} samples vs held-out clips", "",
           "| row | steps | s / 28 samples | time vs first row | color | direction | both | FVD |"
           + (" CLIP score | R-Precision |" if a.clip else ""),
           "|---|---|---|---|---|---|---|---|" + ("---|---|" if a.clip else "")]
  for r in results:
    acc = r["accuracy"]
    lines.append(f"| {r['row']} | {r['steps']} | {r['seconds_per_28']:.2f} | "
                 f"{r['seconds_per_28'] / first:.3f} | {acc['color']:.0%} | {acc['direction']:.0%} | "
                 f"{acc['color_direction']:.0%} | {r['fvd']:.1f} |"
                 + (f" {r['clip_score']:.2f} ± {r['clip_score_se']:.2f} | {r['r_precision']:.0%} |" if a.clip else ""))
  table = "\n".join(lines)
  print(table)
  report_lib.write(a.out_dir, "sampler_quality", table, {"rows": results})


if __name__ == "__main__":
  main()
