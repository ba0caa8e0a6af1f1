"""imagen-video clip-score --clip CKPT_DIR --index DIR/samples.jsonl [--k 100] [--out FILE.json]

CLIP score and CLIP R-Precision of any sampled videos: reads the index `imagen-video sample
--prompts` writes (one JSON object per line with "file", relative to the index's folder, and
"prompt"), prints one JSON line per video {"file", "prompt", "clip_score"} and then the
summary {"clip_score", "clip_score_se", "r_precision", "r_precision_se", "k", "num"}.
"""
from __future__ import annotations

import json
import os
import sys

from absl import flags

from imagen_video.cli.convert_t5 import parse_flags


def _flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string("clip", None, "CLIP checkpoint written by `imagen-video convert-clip`", flag_values=fv)
  flags.DEFINE_string("index", None, "samples.jsonl (file + prompt per line)", flag_values=fv)
  flags.DEFINE_integer("k", 100, "R-Precision: the caption among K-1 other captions of the set "
                       "(capped by the distinct captions there are)", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "seed of the R-Precision distractor draw", flag_values=fv)
  flags.DEFINE_integer("batch", 32, "frames embedded together", flag_values=fv)
  flags.DEFINE_string("out", None, "also write the summary (and per-video scores) to this JSON file", flag_values=fv)
  return fv


def read_index(path: str) -> list[dict]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such index file")
  rows = []
  with open(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError as e:
        raise ValueError(f"{path}: line {n}: not JSON ({e})") from None
      for key in ("file", "prompt"):
        if not isinstance(row.get(key), str):
          raise ValueError(f"{path}: line {n}: field {key!r} missing or not a string")
      row["path"] = os.path.join(os.path.dirname(os.path.abspath(path)), row["file"])
      if not os.path.isfile(row["path"]):
        raise FileNotFoundError(f"{path}: line {n}: video {row['file']!r} not found ({row['path']})")
      rows.append(row)
  if not rows:
    raise ValueError(f"{path}: no videos listed")
  return rows


def main(argv: list[str]) -> int:
  fv = parse_flags(argv, _flags, __doc__, required=("clip", "index"))
  if isinstance(fv, int):
    return fv
  from imagen_video.clip.scorer import ClipScorer
  from imagen_video.media import video_io
  try:
    rows = read_index(fv.index)
    scorer = ClipScorer(fv.clip, batch=fv.batch)
    videos = [video_io.read_video(r["path"])[0] for r in rows]
    result = scorer.score(videos, [r["prompt"] for r in rows], k=fv.k, seed=fv.seed)
  except (FileNotFoundError, ValueError) as e:
    print(f"{argv[0]}: error: {e}", file=sys.stderr)
    return 1
  for r, s in zip(rows, result["scores"]):
    print(json.dumps({"file": r["file"], "prompt": r["prompt"], "clip_score": round(s, 4)}))
  summary = {k: v for k, v in result.items() if k not in ("scores", "hits")}
  summary["clip"] = fv.clip
  print(json.dumps(summary))
  if fv.out:
    with open(fv.out, "w") as f:
      json.dump({**summary, "videos": [{"file": r["file"], "prompt": r["prompt"], "clip_score": s}
                                       for r, s in zip(rows, result["scores"])]}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
