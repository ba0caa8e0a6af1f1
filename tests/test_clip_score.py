"""CLIP score / R-Precision against independent loops, the `clip-score` CLI on an index of real
mp4s, and the `clip_score` evaluator's registration (no torch needed)."""
import json

import numpy as np
import pytest

from imagen_video.clip import checkpoint, metrics
from imagen_video.clip.model import ClipConfig

TINY = ClipConfig(text_length=16, text_width=32, text_mlp=64, text_layers=2, text_heads=4, image_size=32,
                  patch_size=8, vision_width=32, vision_mlp=64, vision_layers=2, vision_heads=4, projection_dim=16)
CAPTIONS = ["a red circle moving left", "a blue square moving up", "a green triangle moving right",
            "a white circle moving down"]


def test_clip_score_and_r_precision_against_loops():
  rng = np.random.default_rng(0)
  img, txt = rng.normal(size=(6, 5, 8)), rng.normal(size=(6, 8))
  got = metrics.clip_scores(img, txt)
  for i in range(6):  # the definition, spelled out
    per_frame = [max(0.0, 100 * float(f @ txt[i]) / (np.linalg.norm(f) * np.linalg.norm(txt[i]))) for f in img[i]]
    assert abs(got[i] - sum(per_frame) / len(per_frame)) < 1e-9
  mean, se = metrics.mean_se(got)
  assert abs(mean - got.mean()) < 1e-12 and abs(se - np.std(got, ddof=1) / np.sqrt(6)) < 1e-12
  # R-Precision: videos made close to their own caption rank it first; K is capped by the set
  caps = [f"caption {i}" for i in range(6)]
  text_of = {c: t for c, t in zip(caps, txt)}
  aligned = txt[:, None, :] + 0.05 * rng.normal(size=(6, 5, 8))
  r = metrics.r_precision(aligned, caps, text_of, k=100)
  assert r["k"] == 6 and r["r_precision"] == 1.0 and r["r_precision_se"] == 0.0
  r = metrics.r_precision(aligned, caps[::-1], text_of, k=3, seed=1)  # mismatched captions
  hits = []
  rng1 = np.random.default_rng(1)
  for video, cap in zip(aligned, caps[::-1]):  # independent recomputation of the same draw
    others = [c for c in sorted(set(caps)) if c != cap]
    chosen = [cap] + [others[j] for j in rng1.choice(len(others), 2, replace=False)]
    sims = [np.mean([f @ text_of[c] / np.linalg.norm(f) / np.linalg.norm(text_of[c]) for f in video]) for c in chosen]
    hits.append(sims[0] > max(sims[1:]))
  assert r["k"] == 3 and r["hits"] == hits and r["r_precision"] == np.mean(hits)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  return checkpoint.save_random(str(tmp_path_factory.mktemp("clip") / "ck"), TINY, CAPTIONS, merges=40)


def test_clip_score_cli_reads_a_sample_index(ckpt, tmp_path, capsys):
  from imagen_video.cli import main as cli
  from imagen_video.clip.scorer import ClipScorer
  from imagen_video.media import video_io
  rng = np.random.default_rng(0)
  rows = []
  for i, cap in enumerate(CAPTIONS):  # the layout `sample --prompts` writes
    name = f"{i:04d}_00.mp4"
    video_io.write_mp4(str(tmp_path / name), rng.integers(0, 256, (4, 40, 56, 3), dtype=np.uint8), fps=6)
    rows.append({"prompt": cap, "seed": i, "sample": 0, "file": name})
  (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  assert cli.main(["clip-score", "--clip", ckpt, "--index", str(tmp_path / "samples.jsonl"),
                   "--out", str(tmp_path / "s.json")]) == 0
  lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
  per_video, summary = lines[:-1], lines[-1]
  assert [(p["file"], p["prompt"]) for p in per_video] == [(r["file"], r["prompt"]) for r in rows]
  videos = [video_io.read_video(str(tmp_path / r["file"]))[0] for r in rows]
  ref = ClipScorer(ckpt).score(videos, CAPTIONS, k=100)
  np.testing.assert_allclose([p["clip_score"] for p in per_video], ref["scores"], atol=1e-4)
  assert abs(summary["clip_score"] - np.mean(ref["scores"])) < 1e-6 and summary["k"] == 4
  assert set(summary) >= {"clip_score", "clip_score_se", "r_precision", "r_precision_se", "k", "num"}
  assert json.loads((tmp_path / "s.json").read_text())["num"] == 4
  # bad input: one line naming the file and the line
  (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x", "file": "missing.mp4"}) + "\n")
  assert cli.main(["clip-score", "--clip", ckpt, "--index", str(tmp_path / "bad.jsonl")]) == 1
  assert "bad.jsonl: line 1: video 'missing.mp4' not found" in capsys.readouterr().err
  assert cli.main(["clip-score", "--clip", str(tmp_path), "--index", str(tmp_path / "samples.jsonl")]) == 1
  assert "clip_config.json: not found" in capsys.readouterr().err


def test_clip_score_evaluator_is_registered_with_a_clip_flag():
  from absl import flags
  from imagen_video.cli import eval as eval_cli
  from imagen_video.eval import registry
  ev = registry.build("clip_score", clip="/x", num=8, k=10)
  assert ev.name == "clip_score" and ev.scalars({"clip_score": 21.0, "r_precision": 0.5}) == {
      "clip_score": 21.0, "r_precision": 0.5}
  fv = flags.FlagValues()
  eval_cli.define_options(fv)
  assert "clip" in fv and "k" in fv
  with pytest.raises(ValueError, match="give --clip DIR"):
    registry.build("clip_score").run(None, "/tmp/unused")
