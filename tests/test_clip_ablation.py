"""CLIP score and R-Precision in the ablation report (a random-init CLIP on the session's tiny
cascade: plumbing, not quality)."""
import json
import os

import numpy as np
import pytest

from imagen_video.clip import checkpoint
from imagen_video.clip.model import ClipConfig
from imagen_video.utils import configs_loader

ABLATIONS = configs_loader.load_module("configs/ablations.py")
TINY = ClipConfig(text_length=24, text_width=32, text_mlp=64, text_layers=1, text_heads=4, image_size=32,
                  patch_size=8, vision_width=32, vision_mlp=64, vision_layers=1, vision_heads=4, projection_dim=16)


@pytest.mark.slow
def test_guidance_ablation_report_shows_clip_columns_when_configured(tiny_cascade, tmp_path):
  from imagen_video.eval import prompt_following
  from imagen_video.train import ablation
  stages = {s["name"]: s for s in tiny_cascade.stages}
  root = str(tmp_path / "abl")
  os.makedirs(os.path.join(root, "runs"))
  os.symlink(os.path.abspath(stages["base"]["workdir"]), os.path.join(root, "runs", "reference"))
  spec = ABLATIONS.get_config("name=guidance,runlocal=true")
  spec.train_config, spec.steps = stages["base"]["config"], 1
  spec.settings = [s for s in spec.settings if s["name"] in ("w1", "w10")]
  prompts = prompt_following.grammar_prompts(spec.eval.caption_num)
  clip = checkpoint.save_random(str(tmp_path / "clip"), TINY, prompts, merges=60)
  result = ablation.run(spec, root, clip=clip)
  for r in result["rows"]:
    m = r["metrics"]
    assert 0 <= m["clip_score"] <= 100 and m["clip_score_se"] >= 0
    # R-Precision is a fraction of the caption-check samples
    n = len(prompts)
    assert m["r_precision"] * n == pytest.approx(round(m["r_precision"] * n), abs=1e-6)
  report = (tmp_path / "abl" / "reports" / "guidance" / "report.md").read_text()
  header = next(line for line in report.splitlines() if line.startswith("| row |"))
  assert "| fvd | clip_score | r_precision |" in header or "| clip_score | r_precision |" in header
  assert "clip_score / r_precision: CLIP (" in report
  saved = json.loads((tmp_path / "abl" / "reports" / "guidance" / "report.json").read_text())
  assert saved["clip"] == clip
  # without a CLIP checkpoint the columns are absent (and the cached rows without CLIP are separate)
  plain = ablation.run(spec, str(tmp_path / "abl"))
  assert all("clip_score" not in r["metrics"] for r in plain["rows"])
  assert np.isfinite([r["metrics"]["color"] for r in plain["rows"]]).all()


@pytest.mark.slow
def test_clip_score_evaluator_on_a_stage(tiny_cascade, tmp_path):
  from imagen_video.eval import registry
  from imagen_video.stage.sampler import StageSampler
  base = next(s for s in tiny_cascade.stages if s["name"] == "base")
  sampler = StageSampler.load(base["workdir"], config=configs_loader.load(base["config"]))
  clip = checkpoint.save_random(str(tmp_path / "clip"), TINY, ["a red circle moving left"], merges=20)
  result = registry.build("clip_score", clip=clip, num=4, batch=4).run(sampler, str(tmp_path / "eval"))
  assert result["num"] == 4 and result["held_out"]["num"] == 4 and len(result["scores"]) == 4
  assert abs(result["clip_score"] - np.mean(result["scores"])) < 1e-9
  saved = json.loads((tmp_path / "eval" / "clip_score.json").read_text())
  assert saved["generated"]["clip_score"] == result["clip_score"] and "held_out" in saved
  assert "| held-out clips | 4 |" in (tmp_path / "eval" / "clip_score.md").read_text()
