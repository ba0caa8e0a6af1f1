"""The ablation runner: specs, the measuring of base / guidance / SR rows, the report."""
import json
import os

import jax
import numpy as np
import pytest

from imagen_video.train import ablation
from imagen_video.train import sweep
from imagen_video.utils import configs_loader
from clip_tiny import tiny_random_config

ABLATIONS = configs_loader.load_module("configs/ablations.py")


@pytest.mark.parametrize("name", ABLATIONS.ABLATIONS)
def test_every_ablation_config_loads_its_variants(name):
  from imagen_video.cli import flags_util
  spec = ABLATIONS.get_config(f"name={name},runlocal=true")
  config_spec = spec.train_config.format(data_dir="/nonexistent")
  names = [v["name"] for v in spec.variants] + [s["name"] for s in spec.settings]
  for v in list(spec.variants) + list(spec.settings):
    assert not v["vs"] or v["vs"] in names, f"{name}/{v['name']} compares with unknown {v['vs']}"
    assert set(v["expect"]) <= {k for k, _ in spec.metrics}
  for v in spec.variants:  # overrides name real config fields
    flags_util.load_config(config_spec, sweep.parse_overrides(v["overrides"]))
  with pytest.raises(ValueError, match="expected one of"):
    ABLATIONS.get_config("name=nope")


def test_verdicts_say_whether_each_row_goes_the_papers_way():
  spec = ABLATIONS.get_config("name=joint_images,runlocal=true")
  rows = [dict(name="reference", vs="", expect={}, metrics=dict(fvd=300.0, x0_mse=0.1)),
          dict(name="images4", vs="reference", expect=dict(fvd="-", x0_mse="-"),
               metrics=dict(fvd=250.0, x0_mse=0.2))]
  text = ablation.verdicts(spec, rows)
  assert text[0].startswith("**reference**")
  assert "fvd 250 vs 300 (lower; the papers expect lower, better): **agrees**" in text[1]
  assert "x0_mse 0.2 vs 0.1 (higher; the papers expect lower, better): **disagrees**" in text[1]


def test_degrade_blurs_adds_grain_and_keeps_range():
  low = np.zeros((2, 3, 8, 8, 3), np.float32)
  low[:, :, 4:, :, :] = 1.0
  out = ablation.degrade(low, blur_sigma=0.5, noise_std=0.04, color_offset=0.03, seed=0)
  assert out.shape == low.shape and out.min() >= 0 and out.max() <= 1
  assert 0.02 < np.abs(out - low).mean() < 0.2


def _reuse(root, name, workdir):
  os.makedirs(os.path.join(root, "runs"), exist_ok=True)
  os.symlink(os.path.abspath(workdir), os.path.join(root, "runs", name))


@pytest.mark.slow
def test_guidance_and_sr_ablations_measure_trained_stages_and_write_reports(tiny_cascade, tmp_path):
  """Rows measured from the session's tiny cascade (already trained: the runner reuses a
  workdir trained to the budget instead of training it again); the guidance rows with a
  random-init CLIP (plumbing, not quality) add CLIP score and R-Precision columns."""
  from imagen_video.clip import checkpoint
  from imagen_video.eval import prompt_following
  stages = {s["name"]: s for s in tiny_cascade.stages}
  root = str(tmp_path)
  _reuse(root, "reference", stages["base"]["workdir"])
  _reuse(root, "ssr1_aug_on", stages["ssr1"]["workdir"])
  guidance = ABLATIONS.get_config("name=guidance,runlocal=true")
  guidance.train_config, guidance.steps = stages["base"]["config"], 1
  guidance.settings = [s for s in guidance.settings if s["name"] in ("w1", "w10", "osc10")]
  prompts = prompt_following.grammar_prompts(guidance.eval.caption_num)
  clip = checkpoint.save_random(str(tmp_path / "clip"), tiny_random_config(), prompts, merges=60)
  result = ablation.run(guidance, root, clip=clip)
  assert [r["name"] for r in result["rows"]] == ["w1", "w10", "osc10"]
  n = 28 * guidance.eval.caption_num
  assert len(prompts) == n
  for r in result["rows"]:
    m = r["metrics"]
    assert 0 <= m["clip_score"] <= 100 and m["clip_score_se"] >= 0
    # R-Precision is a fraction of the caption-check samples
    assert m["r_precision"] * n == pytest.approx(round(m["r_precision"] * n), abs=1e-6)
    # accuracies are counts of the n caption-check samples, and a sample right on colour and
    # direction is right on each: both fail if the runner mixes up rows or columns
    for key in ("color", "direction", "color_direction", "all"):
      assert m[key] * n == pytest.approx(round(m[key] * n), abs=1e-6), (key, m[key])
    assert m["all"] <= m["color_direction"] <= min(m["color"], m["direction"])
    assert m["diversity"] > 0
    assert "x0_mse" not in m  # guidance does not change the denoiser
  # different guidance, different samples
  assert result["rows"][0]["metrics"]["diversity"] != result["rows"][1]["metrics"]["diversity"]
  report = (tmp_path / "reports" / "guidance" / "report.md").read_text()
  assert "| w10 | constant 10 |" in report and "**osc10** vs w10" in report
  assert "its comparison row w6 was not measured" in report
  assert "Held-out clips: color_shift" in report
  header = next(line for line in report.splitlines() if line.startswith("| row |"))
  assert "| clip_score | r_precision |" in header and "clip_score / r_precision: CLIP (" in report
  assert json.loads((tmp_path / "reports" / "guidance" / "report.json").read_text())["clip"] == clip
  again = ablation.run(guidance, root, clip=clip)  # measured once: the second run reads the cache
  assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in result["rows"]]
  # without a CLIP checkpoint the columns are absent
  plain = dict(result, clip=None, rows=[dict(r, metrics={k: v for k, v in r["metrics"].items()
                                                         if not k.startswith(("clip_score", "r_precision"))})
                                        for r in result["rows"]])
  assert "clip_score" not in ablation.markdown(guidance, plain)
  for png in ("metrics.png", "samples.png"):
    assert (tmp_path / "reports" / "guidance" / png).stat().st_size > 1000
  aug = ABLATIONS.get_config("name=cond_aug,runlocal=true")
  aug.train_config, aug.steps = stages["ssr1"]["config"], 1
  aug.variants = aug.variants[:1]
  row = ablation.run(aug, root)["rows"][0]
  m = row["metrics"]
  # the baselines' PSNR, recomputed here from the held-out clips with numpy alone
  from imagen_video.data import held_out
  config = configs_loader.load(stages["ssr1"]["config"])
  clips = held_out.clips(config, aug.eval.sr_clips)
  truth = clips["video"].astype(np.float64)
  for cond, low in (("clean", clips["low"]),
                    ("degraded", ablation.degrade(clips["low"], seed=aug.eval.seed, **dict(aug.eval.degrade)))):
    up = np.clip(np.asarray(jax.image.resize(low, truth.shape, "bicubic")), 0, 1)
    mse = ((up - truth) ** 2).mean(axis=(2, 3, 4))  # per clip and frame
    assert m[f"baseline_psnr_{cond}"] == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), abs=1e-3)
  assert m["baseline_psnr_degraded"] < m["baseline_psnr_clean"]  # the degradation costs
  saved = json.loads((tmp_path / "reports" / "cond_aug" / "report.json").read_text())
  assert saved["rows"][0]["metrics"] == pytest.approx(m)
