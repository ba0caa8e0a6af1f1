"""Cascade: SR conditioning, stage shape checks, one-call sampling of a (runlocal) tiny cascade."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagen_video.cascade import cascade as cascade_lib
from imagen_video.stage import conditioning
from imagen_video.train import trainer
from imagen_video.utils import configs_loader

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "cascade_tiny.py")


def test_temporal_upsampling_repeats_or_blends_frames():
  low = jnp.arange(4, dtype=jnp.float32).reshape(1, 4, 1, 1, 1)
  rep = conditioning.upsample(low, (1, 8, 1, 1, 1), "repeat")[0, :, 0, 0, 0]
  np.testing.assert_array_equal(rep, [0, 0, 1, 1, 2, 2, 3, 3])
  lin = conditioning.upsample(low, (1, 8, 1, 1, 1), "linear")[0, :, 0, 0, 0]
  np.testing.assert_allclose(lin, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3])


def test_spatial_upsampling_is_bilinear_and_keeps_constants():
  low = jnp.full((1, 2, 4, 4, 3), 0.25)
  up = conditioning.upsample(low, (1, 2, 8, 8, 3))
  assert up.shape == (1, 2, 8, 8, 3)
  np.testing.assert_allclose(up, 0.25, atol=1e-6)


def test_guidance_spec_constant_and_oscillating():
  assert cascade_lib.guidance_weights(3.0, 8) == 3.0
  w = cascade_lib.guidance_weights({"kind": "oscillating", "high": 15.0, "low": 1.0}, 6)
  np.testing.assert_array_equal(w, [15, 1, 15, 1, 15, 1])


def test_cascade_listing_takes_sampling_steps_per_stage():
  listing = configs_loader.load(f"{CONFIG}:sample_steps=256/128/128/96")
  assert [s["steps"] for s in listing.stages] == [256, 128, 128, 96]
  assert [s["steps"] for s in configs_loader.load(CONFIG).stages] == [64, 16, 16, 16]
  for bad in ("sample_steps=256/128", "sample_steps=8/8/8/8,distilled=students"):
    with pytest.raises(ValueError, match="sample_steps"):
      configs_loader.load(f"{CONFIG}:{bad}")


def test_tiny_cascade_samples_every_stage_in_one_call(tiny_cascade):
  cascade = cascade_lib.Cascade.load(tiny_cascade)
  assert [r.name for r in cascade.runs] == ["base", "tsr", "ssr1", "ssr2"]
  # One T5 shared by the four stages (same text config).
  assert len({id(r.stage.text) for r in cascade.runs}) == 1
  video, stages = cascade.sample(["a red circle moving left", "a blue square moving up"], seed=0,
                                 return_stages=True)
  assert video.dtype == np.uint8 and video.shape == (2, 16, 64, 64, 3)
  assert [s.shape[1:4] for s in stages] == [(8, 16, 16), (16, 16, 16), (16, 32, 32), (16, 64, 64)]
  again = cascade.sample(["a red circle moving left", "a blue square moving up"], seed=0)
  np.testing.assert_array_equal(video, again)


def test_mismatched_stage_shapes_are_reported(tiny_cascade):
  cascade = cascade_lib.Cascade.load(tiny_cascade)
  cascade.runs = [cascade.runs[0], cascade.runs[2]]  # base 8x16x16 straight into ssr1
  with pytest.raises(ValueError, match="ssr1 expects a 16x16x16 .* base produces 8x16x16"):
    cascade.sample(["a red circle moving left"])


def test_caption_eval_of_the_cascade_scores_its_final_output(tiny_cascade, tmp_path):
  from imagen_video.cli import main as cli
  root = os.path.dirname(tiny_cascade.stages[0]["workdir"])
  spec = f"{CONFIG}:runlocal,root={root},data_dir={os.path.join(root, 'tfds')}"
  assert cli.main(["eval", "--cascade", spec, "--num", "1", "--batch", "4",
                   "--out_dir", str(tmp_path)]) == 0
  import json
  report = json.loads((tmp_path / "caption_eval.json").read_text())
  assert report["samples"] == 28 and report["shape"] == "16x64x64"
  assert set(report["accuracy"]) >= {"color", "direction", "color_direction"}
  md = (tmp_path / "caption_eval.md").read_text()
  assert "base -> tsr -> ssr1 -> ssr2" in md
  # Every stage scored too, at its own output size (where along the cascade a prompt is lost).
  for name, shape in (("base", "8x16x16"), ("tsr", "16x16x16"), ("ssr1", "16x32x32"),
                      ("ssr2", "16x64x64")):
    assert f"| {name} | {shape} |" in md
  assert (tmp_path / "caption_eval.png").stat().st_size > 0


def test_residual_sr_stage_diffuses_the_difference_to_the_upsampled_input(tiny_cascade):
  # Same params and keys: a residual stage's loss on video equals a plain stage's on
  # scale * (video - upsample(low)), and its samples are upsample(low) + the plain samples / scale.
  config = configs_loader.load(tiny_cascade.stages[1]["config"])  # tsr
  assert config.stage.residual and config.stage.temporal_upsample == "linear"
  scale = config.stage.residual_scale
  assert scale == 8.0 and config.diffusion.resolution_shift == 1.0
  with config.unlocked():
    config.stage.back_projection = 0  # the residual mechanism alone
  resid, params, _ = trainer.load_for_sampling(config, tiny_cascade.stages[1]["workdir"])
  with config.unlocked():
    config.stage.residual = False
  plain, _, _ = trainer.load_for_sampling(config, tiny_cascade.stages[1]["workdir"],
                                          text_encoder=resid.text)
  key = config.stage.low_res_key
  rng = np.random.default_rng(0)
  low = jnp.asarray(rng.uniform(-1, 1, (2, 8, 16, 16, 3)), jnp.float32)
  video = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 16, 3)), jnp.float32)
  up = conditioning.upsample(low, video.shape, config.stage.temporal_upsample)
  ids, mask = resid.text.tokenize(["a red circle moving left"] * 2)
  batch = {"video": video, key: low, "text_tokens": ids, "text_mask": mask}
  k = jax.random.key(3)
  text = params.get("text", resid.text.params)
  l_res = resid.loss(params["unet"], text, batch, k, train=False)
  l_plain = plain.loss(params["unet"], text, {**batch, "video": scale * (video - up)}, k, train=False)
  np.testing.assert_allclose(np.asarray(l_res[0] if isinstance(l_res, tuple) else l_res),
                             np.asarray(l_plain[0] if isinstance(l_plain, tuple) else l_plain), rtol=1e-5)
  kw = dict(steps=2, guidance=1.0, low_res=low, shape=video.shape)
  s_res = resid.sample(params["unet"], text, ["a red circle moving left"] * 2, k, **kw)
  # a residual stage does not threshold its scaled residual (the plain one would clip it)
  s_plain = plain.sample(params["unet"], text, ["a red circle moving left"] * 2, k, thresholding="none", **kw)
  s_plain = np.asarray(s_plain)
  kept = np.abs(s_plain) < 1 - 1e-6  # the plain stage clips its output, the scaled residual too
  assert kept.mean() > 0.5
  expected = np.clip(np.asarray(up) + s_plain / scale, -1, 1)
  np.testing.assert_allclose(np.asarray(s_res)[kept], expected[kept], atol=1e-5)


def test_stage_samples_with_its_configured_thresholding(tiny_cascade):
  # The tiny base clips x0 (static): dynamic thresholding greys its black background.
  config = trainer.resolve_config(configs_loader.load(tiny_cascade.stages[0]["config"]))
  assert config.sample.thresholding == "static"
  stage, ema, _ = trainer.load_for_sampling(config, tiny_cascade.stages[0]["workdir"])
  text = ema.get("text", stage.text.params)
  run = lambda th: np.asarray(stage.sample(ema["unet"], text, ["a red circle moving left"],
                                           jax.random.key(0), steps=2, thresholding=th))
  np.testing.assert_array_equal(run(None), run("static"))


def test_text_probe_reports_x0_error_per_caption_variant(tiny_cascade, tmp_path):
  from imagen_video.cli import main as cli
  from imagen_video.eval import sr_psnr, text_probe
  entry = tiny_cascade.stages[0]
  assert cli.main(["eval", "--config", entry["config"], "--workdir", entry["workdir"],
                   "--metric", "text_probe", "--num", "4", "--out_dir", str(tmp_path)]) == 0
  md = (tmp_path / "text_probe.md").read_text()
  assert "| log-SNR | true | flipped | rotated | null |" in md
  # Same noise for every variant: an unchanged caption gives exactly the same error.
  config = trainer.resolve_config(configs_loader.load(entry["config"]))
  stage, ema, _ = trainer.load_for_sampling(config, entry["workdir"])
  clips = sr_psnr.test_clips(stage.config, 2)
  caps = clips["caption"]
  err = text_probe.x0_errors(stage, ema["unet"], ema.get("text", stage.text.params),
                             clips["video"] * 2 - 1, {"true": caps, "again": list(caps)},
                             log_snrs=(-2.0, 2.0))
  assert err["true"] == err["again"] and all(e > 0 for e in err["null"])


def test_fvd_eval_of_a_stage_and_of_the_cascade(tiny_cascade, tmp_path):
  import json
  from imagen_video.cli import main as cli
  root = os.path.dirname(tiny_cascade.stages[0]["workdir"])
  spec = f"{CONFIG}:runlocal,root={root},data_dir={os.path.join(root, 'tfds')}"
  assert cli.main(["eval", "--cascade", spec, "--metric", "fvd", "--num", "4", "--batch", "4",
                   "--out_dir", str(tmp_path / "cascade")]) == 0
  entry = tiny_cascade.stages[0]
  assert cli.main(["eval", "--config", entry["config"], "--workdir", entry["workdir"],
                   "--metric", "fvd", "--num", "4", "--batch", "2",
                   "--out_dir", str(tmp_path / "base")]) == 0
  final = json.loads((tmp_path / "cascade" / "fvd.json").read_text())
  base = json.loads((tmp_path / "base" / "fvd.json").read_text())
  assert final["num"] == 4 and final["shape"] == [16, 64, 64] and final["frame_repeat"] == 1
  assert base["shape"] == [8, 16, 16] and base["frame_repeat"] == 2  # I3D needs >= 9 frames
  for r in (final, base):  # a 4-step runlocal model is far from the data
    assert r["fvd"] > 1.0 and r["spread_real"] > 0 and r["spread_generated"] > 0
  assert "| FVD |" in (tmp_path / "base" / "fvd.md").read_text()
  assert (tmp_path / "cascade" / "fvd.png").stat().st_size > 0
