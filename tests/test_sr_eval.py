"""sr_psnr: baselines and PSNR on known inputs; a runlocal texture SR stage end to end."""
import json
import os

import numpy as np
import pytest

from imagen_video.eval import sr_psnr
from imagen_video.stage import conditioning
from imagen_video.utils import configs_loader

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "sr_textures.py")


def test_psnr_formula():
  a = np.zeros((2, 1, 2, 2, 3))
  b = a.copy()
  b[0] += 0.1  # mse 0.01 -> 20 dB
  b[1, 0, 0, 0, 0] = 1.0  # mse 1/12
  np.testing.assert_allclose(sr_psnr.psnr(b, a), [20.0, 10 * np.log10(12)])
  assert sr_psnr.psnr(a, a)[0] == np.inf
  with pytest.raises(ValueError, match="shapes"):
    sr_psnr.psnr(a, a[:, :, :1])


def test_paired_difference_separates_a_consistent_win_from_spread():
  base = np.array([20.0, 30.0, 25.0, 35.0])          # clips differ a lot...
  r = sr_psnr.paired(base + [0.5, 0.4, 0.6, 0.5], base)  # ...the model wins each by ~0.5
  assert r["delta"] == pytest.approx(0.5) and r["wins"] == 4
  assert r["delta_se"] == pytest.approx(np.std([0.0, -0.1, 0.1, 0.0], ddof=1) / 2)
  assert sr_psnr.paired(base - 0.2, base)["wins"] == 0


def test_linear_blend_is_exact_on_linear_motion_and_matches_dataset_alignment():
  k, t = 2, 4
  high = np.arange(t * k, dtype=np.float32).reshape(1, t * k, 1, 1, 1) / 10  # linear in time
  low = high[:, ::k]  # the dataset's low-fps frames: low frame i is high frame i*k
  out = sr_psnr.linear_blend(low, t * k)
  np.testing.assert_allclose(out[:, :-(k - 1)], high[:, :-(k - 1)], atol=1e-6)
  np.testing.assert_allclose(out[:, -1], low[:, -1])  # after the last low frame: hold it
  # Same alignment as the TSR stage's own 'linear' conditioning upsampler.
  np.testing.assert_allclose(out, conditioning.upsample(low, out.shape, "linear"), atol=1e-6)
  with pytest.raises(ValueError, match="multiple"):
    sr_psnr.linear_blend(low, 7)


def test_bicubic_keeps_constants_and_linear_ramps_in_range():
  low = np.full((1, 2, 4, 4, 3), 0.3, np.float32)
  np.testing.assert_allclose(sr_psnr.bicubic_upsample(low, 8, 8), 0.3, atol=1e-6)
  step = np.zeros((1, 1, 4, 4, 3), np.float32)
  step[:, :, :, 2:] = 1.0  # bicubic overshoots at edges: clipped to [0, 1]
  up = sr_psnr.bicubic_upsample(step, 8, 8)
  assert up.shape == (1, 1, 8, 8, 3) and up.min() >= 0 and up.max() <= 1
  with pytest.raises(ValueError, match="kind"):
    sr_psnr.baseline("base", low, (1, 2, 8, 8, 3))


def _result(steps, delta, se=0.1):
  return {"steps": steps, "delta": delta, "delta_se": se, "wins": 1, "num": 2, "samples": 2,
          "delta_mean": delta + 1, "delta_se_mean": se, "psnr_model": {"mean": 30.0 + delta},
          "sampler": "ddim", "baseline": "bicubic", "stage": "s", "step": 5, "dataset": "d validation"}


def test_steps_sweep_picks_the_best_single_draw_and_tabulates_each(tmp_path):
  results = [_result(16, -2.0), _result(4, 0.5), _result(1, 0.3)]
  assert sr_psnr.best_steps(results) == 4
  rows = sr_psnr.steps_table(results).splitlines()[2:]
  assert [r.split("|")[1].strip() for r in rows] == ["16", "4", "1"]
  assert "+0.50 ± 0.10, 1/2" in rows[1] and "+1.50 ± 0.10 (2 draws)" in rows[1]
  sr_psnr.steps_plot(results, str(tmp_path / "p.png"))
  assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.slow
def test_runlocal_texture_tsr_then_sr_psnr_cli(tmp_path):
  from imagen_video.cli import main as cli
  from imagen_video.train import trainer
  arg = f"{CONFIG}:stage=tsr,runlocal,data_dir={tmp_path / 'tfds'}"
  workdir = str(tmp_path / "tsr")
  trainer.train_and_evaluate(configs_loader.load(arg), workdir)
  out_dir = tmp_path / "eval"
  assert cli.main(["eval", "--config", arg, "--workdir", workdir, "--metric", "sr_psnr",
                   "--num", "2", "--out_dir", str(out_dir)]) == 0
  result = json.loads((out_dir / "sr_psnr.json").read_text())
  assert result["kind"] == "tsr" and result["num"] == 2 and result["baseline"] == "linear blend"
  # Sampled at the stage's configured level (the config's, not a number restated here).
  assert result["aug_level"] == pytest.approx(configs_loader.load(arg).stage.aug_level)
  for key in ("psnr_model", "psnr_baseline", "psnr_baseline_bp"):
    assert len(result[key]["per_clip"]) == 2 and np.isfinite(result[key]["mean"])
  assert result["delta_bp"] == pytest.approx(result["psnr_model"]["mean"] - result["psnr_baseline_bp"]["mean"])
  assert "| tsr (tsr, step 4) | texture_pans test | 2 |" in (out_dir / "sr_psnr.md").read_text()
  assert 0 < result["ssim_model"] <= 1 and 0 < result["ssim_baseline"] <= 1
  assert "SSIM per frame" in (out_dir / "sr_psnr.md").read_text()
  assert (out_dir / "sr_psnr.png").stat().st_size > 0
  test_baseline = result["psnr_baseline"]["per_clip"]
  # Two draws per clip: their average is scored too, beside the per-draw PSNR; on the
  # validation split (its own photos), which is where sampler settings are chosen.
  assert cli.main(["eval", "--config", arg, "--workdir", workdir, "--metric", "sr_psnr",
                   "--num", "2", "--samples", "2", "--split", "validation",
                   "--out_dir", str(out_dir)]) == 0
  result = json.loads((out_dir / "sr_psnr.json").read_text())
  assert result["dataset"].endswith(" validation") and result["psnr_baseline"]["per_clip"] != test_baseline
  assert result["samples"] == 2 and len(result["psnr_mean"]["per_clip"]) == 2
  assert result["delta_mean"] == pytest.approx(result["psnr_mean"]["mean"] - result["psnr_baseline"]["mean"])
  assert "PSNR of their mean" in (out_dir / "sr_psnr.md").read_text()
  # A sweep over step counts: one row each, the best named, a plot.
  assert cli.main(["eval", "--config", arg, "--workdir", workdir, "--metric", "sr_psnr",
                   "--num", "2", "--sweep_steps", "2,1", "--split", "validation",
                   "--out_dir", str(out_dir)]) == 0
  sweep = json.loads((out_dir / "sr_psnr_steps.json").read_text())
  assert [r["steps"] for r in sweep["results"]] == [2, 1]
  assert sweep["best_steps"] == max(sweep["results"], key=lambda r: r["delta"])["steps"]
  assert f"best for one draw: {sweep['best_steps']} steps" in (out_dir / "sr_psnr_steps.md").read_text()
  assert (out_dir / "sr_psnr_steps.png").stat().st_size > 0


def test_back_projected_baseline_agrees_with_its_low_res_input():
  """The baseline given the stage's back-projection: its area-downsampled frames move onto
  the low-res input (what the same post-processing does for the model)."""
  import ml_collections
  from imagen_video.stage import conditioning
  config = ml_collections.ConfigDict(dict(stage=dict(kind="ssr", back_projection=3,
                                                     temporal_upsample="repeat")))
  low = np.random.default_rng(0).uniform(0.2, 0.8, (2, 3, 4, 4, 3)).astype(np.float32)
  base = sr_psnr.bicubic_upsample(low, 8, 8)
  bp = sr_psnr.back_projected(config, base, low)
  err = lambda v: float(np.abs(np.asarray(conditioning.downsample(v, (3, 4, 4))) - low).mean())
  assert err(bp) < err(base) / 4 and err(base) > 1e-3
  with config.unlocked():
    config.stage.back_projection = 0
  np.testing.assert_allclose(sr_psnr.back_projected(config, base, low), base, atol=1e-6)
