"""Cascade: SR conditioning, stage shape checks, one-call sampling of a (runlocal) tiny cascade."""
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ONE_DEVICE_XLA_FLAGS  # tests/ is on sys.path

from imagen_video.cascade import cascade as cascade_lib
from imagen_video.diffusion import guidance as guidance_lib
from imagen_video.stage import conditioning, loading
from imagen_video.stage.model import Stage
from imagen_video.stage.sampler import Request, StageSampler
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
  assert guidance_lib.weights(3.0, 8) == 3.0
  w = guidance_lib.weights({"kind": "oscillating", "high": 15.0, "low": 1.0}, 6)
  np.testing.assert_array_equal(w, [15, 1, 15, 1, 15, 1])
  # Guidance in a limited interval: the first three quarters of 8 steps, noisiest first.
  spec = guidance_lib.parse_spec("3@0-0.75")
  assert spec == {"kind": "interval", "weight": 3.0, "start": 0.0, "end": 0.75}
  np.testing.assert_array_equal(guidance_lib.weights(spec, 8), [3, 3, 3, 3, 3, 3, 1, 1])
  np.testing.assert_array_equal(guidance_lib.weights(guidance_lib.parse_spec("5@0.5-1"), 4), [1, 1, 5, 5])
  assert guidance_lib.parse_spec("2.5") == 2.5
  with pytest.raises(ValueError, match="guidance interval"):
    guidance_lib.weights({"kind": "interval", "weight": 3.0, "start": 0.8, "end": 0.2}, 8)
  for bad in (float("nan"), float("inf"), [1.0, 2.0]):
    with pytest.raises(ValueError, match="guidance weight"):
      guidance_lib.weights(bad, 6)


def test_cascade_listing_takes_sampling_steps_per_stage():
  listing = configs_loader.load(f"{CONFIG}:sample_steps=256/128/128/96")
  assert [s["steps"] for s in listing.stages] == [256, 128, 128, 96]
  assert [s["steps"] for s in configs_loader.load(CONFIG).stages] == [64, 16, 16, 16]
  for bad in ("sample_steps=256/128", "sample_steps=8/8/8/8,distilled=students"):
    with pytest.raises(ValueError, match="sample_steps"):
      configs_loader.load(f"{CONFIG}:{bad}")


PROMPTS = ("a red circle moving left", "a blue square moving up", "a green triangle moving down")


def test_tiny_cascade_encodes_once_and_samples_every_stage(tiny_cascade, monkeypatch):
  from imagen_video.text.encoder import TextEncoder
  cascade = cascade_lib.Cascade.load(tiny_cascade)
  assert [r.name for r in cascade.runs] == ["base", "tsr", "ssr1", "ssr2"]
  # One T5 shared by the four stages (same text config).
  assert len({id(r.stage.text) for r in cascade.runs}) == 1
  calls = []
  real = TextEncoder.encode_with
  monkeypatch.setattr(TextEncoder, "encode_with", lambda self, *a: calls.append(a[1].shape) or real(self, *a))
  out = cascade.sample(Request(prompts=PROMPTS[:2], seed=0))
  assert len(calls) == 1 and calls[0][0] == 2  # the text encoder ran once, for 4 stages
  assert out.video.shape == (2, 16, 64, 64, 3) and np.abs(out.video).max() <= 1
  assert [s.shape[1:4] for _, s in out.stages] == [(8, 16, 16), (16, 16, 16), (16, 32, 32), (16, 64, 64)]
  again = cascade.sample(Request(prompts=PROMPTS[:2], seed=0))
  np.testing.assert_array_equal(out.video, again.video)


def test_a_sample_depends_on_its_seed_not_on_its_batch(tiny_cascade):
  """The one seed rule: sample b of a request with seed s is the sample of seed s + b alone."""
  cascade = cascade_lib.Cascade.load(tiny_cascade, stages=["base", "tsr"])
  batch = cascade.sample(Request(prompts=PROMPTS[:2], seed=5)).video
  alone = cascade.sample(Request(prompts=PROMPTS[1:2], seed=6)).video
  np.testing.assert_allclose(batch[1], alone[0], atol=2e-4)
  other = cascade.sample(Request(prompts=PROMPTS[1:2], seed=7)).video
  assert np.abs(other[0] - alone[0]).mean() > 0.01  # another seed, another sample


def test_cascade_refuses_one_stage_settings_and_bad_requests(tiny_cascade):
  cascade = cascade_lib.Cascade.load(tiny_cascade, stages=["base"])
  for bad, match in ((dict(steps=3), "its own steps"), (dict(guidance=2.0), "its own guidance"),
                     (dict(seed=-1), "seed -1"), (dict(prompts=("",)), "non-empty"),
                     (dict(start=0.5), "start 0.5")):
    with pytest.raises(ValueError, match=match):
      cascade.sample(Request(**{"prompts": PROMPTS[:1], **bad}))


def test_mismatched_stage_shapes_are_reported(tiny_cascade):
  cascade = cascade_lib.Cascade.load(tiny_cascade)
  with pytest.raises(ValueError, match="ssr1 expects a 16x16x16 .* base produces 8x16x16"):
    cascade_lib.Cascade([cascade.runs[0], cascade.runs[2]])  # base 8x16x16 straight into ssr1


def test_a_stage_loads_from_its_workdir_alone(tiny_cascade, tmp_path):
  """The saved config and tokenizer copy are enough: no dataset, no training code."""
  import shutil
  import subprocess
  import sys
  entry = tiny_cascade.stages[0]
  moved = tmp_path / "base"
  shutil.copytree(entry["workdir"], moved)  # the dataset dir it was trained from is not needed
  code = ("import sys; from imagen_video.stage.sampler import StageSampler, Request; "
          f"s = StageSampler.load({str(moved)!r}); "
          "print(s.sample(Request(prompts=('a red circle moving left',), steps=2)).video.shape); "
          "bad = [m for m in sys.modules if m.startswith(('imagen_video.train', 'imagen_video.eval', "
          "'imagen_video.cli', 'imagen_video.data.pipeline', 'tensorflow'))]; print('upward', bad)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "XLA_FLAGS": ONE_DEVICE_XLA_FLAGS})
  assert out.returncode == 0, out.stderr[-2000:]
  assert "(1, 8, 16, 16, 3)" in out.stdout and "upward []" in out.stdout
  # A config that disagrees with the checkpoint on what the params mean is refused by name.
  config = configs_loader.load(entry["config"])
  config.model.channels = 32
  with pytest.raises(ValueError, match=r"model.channels \(trained \d+, given 32\)"):
    StageSampler.load(moved, config=config)


def test_caption_eval_of_the_cascade_scores_its_final_output(tiny_cascade, tmp_path):
  from imagen_video.cli import main as cli
  root = os.path.dirname(tiny_cascade.stages[0]["workdir"])
  spec = f"{CONFIG}:runlocal,root={root},data_dir={os.path.join(root, 'tfds')}"
  assert cli.main(["eval", "--cascade", spec, "--num", "1", "--batch", "2",
                   "--out_dir", str(tmp_path)]) == 0
  import json
  report = json.loads((tmp_path / "caption_eval.json").read_text())
  assert report["samples"] == 28 and report["shape"] == "16x64x64"
  assert set(report["accuracy"]) >= {"color", "direction", "color_direction"}
  md = (tmp_path / "caption_eval.md").read_text()
  assert "cascade base (step 8, ancestral 4) -> tsr (step 4, ancestral 4) -> ssr1" in md
  # Every stage scored too, at its own output size (where along the cascade a prompt is lost).
  assert "| stage | output | color | shape | direction | color + direction | all three |" in md
  for name, shape in (("base", "8x16x16"), ("tsr", "16x16x16"), ("ssr1", "16x32x32"),
                      ("ssr2", "16x64x64")):
    row = next(line for line in md.splitlines() if line.startswith(f"| {name} | {shape} |"))
    # five rates with SEs, then background and edge width beside the data's (black, ~0.7 px)
    assert row.count("±") == 5 and " (0.0) |" in row, row
    data_edge = float(re.search(r"\(([0-9.]+)\) \|$", row).group(1))
    assert 0.3 < data_edge < 1.0, row
  assert (tmp_path / "caption_eval.png").stat().st_size > 0


def test_residual_sr_stage_diffuses_the_difference_to_the_upsampled_input(tiny_cascade):
  # Same params and keys: a residual stage's loss on video equals a plain stage's on
  # scale * (video - upsample(low)), and its samples are upsample(low) + the plain samples / scale.
  workdir = tiny_cascade.stages[1]["workdir"]  # tsr
  _, params, _ = loading.load(workdir)
  config = loading.resolve(workdir)
  assert config.stage.residual and config.stage.temporal_upsample == "linear"
  scale = config.stage.residual_scale
  assert scale == 8.0 and config.diffusion.resolution_shift == 1.0
  with config.unlocked():
    config.stage.back_projection = 0  # the residual mechanism alone
  resid = Stage(config)
  plain_config = config.copy_and_resolve_references()
  with plain_config.unlocked():
    plain_config.stage.residual = False
    plain_config.sample.thresholding = "none"  # a residual stage does not threshold its residual
  plain = Stage(plain_config, text_encoder=resid.text)
  rng = np.random.default_rng(0)
  low = jnp.asarray(rng.uniform(-1, 1, (2, 8, 16, 16, 3)), jnp.float32)
  video = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 16, 3)), jnp.float32)
  up = conditioning.upsample(low, video.shape, config.stage.temporal_upsample)
  ids, mask = resid.text.tokenize(["a red circle moving left"] * 2)
  batch = {"video": video, "video_8x16x16": low, "text_tokens": ids, "text_mask": mask}
  k = jax.random.key(3)
  text = params.get("text", resid.text.params)
  loss = lambda stage: jax.jit(lambda *a: stage.loss(*a, train=False))  # one program, not ~300 ops
  l_res = loss(resid)(params["unet"], text, batch, k)
  l_plain = loss(plain)(params["unet"], text, {**batch, "video": scale * (video - up)}, k)
  np.testing.assert_allclose(np.asarray(l_res[0] if isinstance(l_res, tuple) else l_res),
                             np.asarray(l_plain[0] if isinstance(l_plain, tuple) else l_plain), rtol=1e-5)
  r = Request(prompts=("a red circle moving left",) * 2, seed=3, steps=2, guidance=1.0)
  s_res = StageSampler(resid, params).draw(r, low_res=low)
  s_plain = StageSampler(plain, params).draw(r, low_res=low)
  kept = np.abs(s_plain) < 1 - 1e-6  # the plain stage clips its output, the scaled residual too
  assert kept.mean() > 0.5
  expected = np.clip(np.asarray(up) + s_plain / scale, -1, 1)
  np.testing.assert_allclose(s_res[kept], expected[kept], atol=1e-5)


def test_blur_augmented_sr_stage_trains_on_the_blurred_input(tiny_cascade):
  # With stage.blur_max the loss equals the blur-free stage's on the same key with the low-res
  # input blurred as `blur_augment` does: the conditioning and the residual target both see
  # the blurred input, so the stage learns to sharpen a soft one.
  workdir = tiny_cascade.stages[1]["workdir"]  # tsr: a residual stage
  _, params, _ = loading.load(workdir)
  config = loading.resolve(workdir)
  blurred_config = config.copy_and_resolve_references()
  with blurred_config.unlocked():
    blurred_config.stage.blur_max = 1.0
  plain = Stage(config)
  blurred = Stage(blurred_config, text_encoder=plain.text)
  rng = np.random.default_rng(1)
  low = jnp.asarray(rng.uniform(-1, 1, (2, 8, 16, 16, 3)), jnp.float32)
  video = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 16, 3)), jnp.float32)
  ids, mask = plain.text.tokenize(["a red circle moving left"] * 2)
  batch = {"video": video, "video_8x16x16": low, "text_tokens": ids, "text_mask": mask}
  k = jax.random.key(5)
  k_blur = jax.random.fold_in(jax.random.split(k, 4)[1], 1)  # the loss's conditioning key, folded
  soft = conditioning.blur_augment(blurred_config, low, k_blur)
  assert float(jnp.abs(soft - low).mean()) > 0.01
  text = params.get("text", plain.text.params)
  loss = lambda stage, b: np.asarray(jax.tree.leaves(stage.loss(params["unet"], text, b, k, train=False))[0])
  np.testing.assert_allclose(loss(blurred, batch), loss(plain, {**batch, "video_8x16x16": soft}), rtol=1e-5)
  assert not np.allclose(loss(blurred, batch), loss(plain, batch), rtol=1e-3)


def test_stage_samples_with_its_configured_thresholding(tiny_cascade):
  # The tiny base samples without thresholding (clipping each step's x0 at -1 greys its black
  # background, docs/results/demo_quality.md section 7) and clips its output once; the
  # config's choice is what runs.
  workdir = tiny_cascade.stages[0]["workdir"]
  sampler = StageSampler.load(workdir)
  assert sampler.config.sample.thresholding == "none" == sampler.stage.default_thresholding()
  r = Request(prompts=("a red circle moving left",), steps=4, guidance=20.0)  # to overshoot
  unclipped = sampler.draw(r)
  assert np.abs(unclipped).max() <= 1  # the output is clipped once, as frames
  with sampler.config.unlocked():
    sampler.config.sample.thresholding = "static"
  assert np.abs(unclipped - sampler.draw(r)).max() > 1e-3


def test_text_probe_reports_x0_error_per_caption_variant(tiny_cascade, tmp_path):
  from imagen_video.cli import main as cli
  from imagen_video.data import held_out
  from imagen_video.eval import text_probe
  entry = tiny_cascade.stages[0]
  assert cli.main(["eval", "--config", entry["config"], "--workdir", entry["workdir"],
                   "--metric", "text_probe", "--num", "4", "--out_dir", str(tmp_path)]) == 0
  md = (tmp_path / "text_probe.md").read_text()
  assert "| log-SNR | true | flipped | rotated | null |" in md
  # Same noise for every variant: an unchanged caption gives exactly the same error.
  sampler = StageSampler.load(entry["workdir"])
  clips = held_out.clips(sampler.config, 2)
  caps = clips["caption"]
  err = text_probe.x0_errors(sampler, clips["video"] * 2 - 1, {"true": caps, "again": list(caps)},
                             log_snrs=(-2.0, 2.0))
  assert err["true"] == err["again"] and all(e > 0 for e in err["null"])


def test_fvd_eval_of_a_stage_and_of_the_cascade(tiny_cascade, tmp_path):
  import json
  from imagen_video.cli import main as cli
  root = os.path.dirname(tiny_cascade.stages[0]["workdir"])
  spec = f"{CONFIG}:runlocal,root={root},data_dir={os.path.join(root, 'tfds')}"
  assert cli.main(["eval", "--cascade", spec, "--metric", "fvd", "--num", "4", "--batch", "2",
                   "--out_dir", str(tmp_path / "cascade")]) == 0
  entry = tiny_cascade.stages[0]
  assert cli.main(["eval", "--config", entry["config"], "--workdir", entry["workdir"],
                   "--metric", "fvd", "--num", "4", "--batch", "2",
                   "--out_dir", str(tmp_path / "base")]) == 0
  final = json.loads((tmp_path / "cascade" / "fvd.json").read_text())
  base = json.loads((tmp_path / "base" / "fvd.json").read_text())
  assert final["num"] == 4 and final["shape"] == [16, 64, 64] and final["frame_repeat"] == 1
  assert base["shape"] == [8, 16, 16] and base["frame_repeat"] == 2  # I3D needs >= 9 frames
  # The held-out side, recomputed here: the spread of the 4 real clips' I3D features (frames
  # repeated 2x as the evaluator does for 8-frame clips), sqrt(2 tr C) with numpy's covariance.
  from imagen_video.data import held_out
  from imagen_video.eval import fvd as fvd_lib
  from imagen_video.media import video_io
  real = video_io.to_uint8(held_out.clips(configs_loader.load(entry["config"]), 4)["video"], (0.0, 1.0))
  feats = fvd_lib.FeatureExtractor()(np.repeat(real, 2, axis=1))
  assert base["spread_real"] == pytest.approx(float(np.sqrt(2 * np.trace(np.cov(feats, rowvar=False)))),
                                              rel=1e-4)
  for r in (final, base):  # an untrained model's samples are not the held-out clips
    assert r["fvd"] > 0 and r["spread_generated"] > 0
  assert "| FVD |" in (tmp_path / "base" / "fvd.md").read_text()
  assert (tmp_path / "cascade" / "fvd.png").stat().st_size > 0


@pytest.mark.slow
def test_clip_score_evaluator_on_a_stage(tiny_cascade, tmp_path):
  from imagen_video.clip import checkpoint
  from imagen_video.eval import registry
  from clip_tiny import tiny_random_config
  from imagen_video.stage.sampler import StageSampler
  base = next(s for s in tiny_cascade.stages if s["name"] == "base")
  sampler = StageSampler.load(base["workdir"], config=configs_loader.load(base["config"]))
  clip = checkpoint.save_random(str(tmp_path / "clip"), tiny_random_config(), ["a red circle moving left"], merges=20)
  result = registry.build("clip_score", clip=clip, num=4, batch=4).run(sampler, str(tmp_path / "eval"))
  assert result["num"] == 4 and result["held_out"]["num"] == 4 and len(result["scores"]) == 4
  assert abs(result["clip_score"] - np.mean(result["scores"])) < 1e-9
  saved = json.loads((tmp_path / "eval" / "clip_score.json").read_text())
  assert saved["generated"]["clip_score"] == result["clip_score"] and "held_out" in saved
  assert "| held-out clips | 4 |" in (tmp_path / "eval" / "clip_score.md").read_text()


def test_demo_moves_aside_and_retrains_a_stage_of_another_config(tiny_cascade, tmp_path, capsys):
  # An older demo's stage (here ssr2 saved with another back-projection) is not reused, which
  # would fail at loading, nor overwritten: it is moved aside and trained again.
  import shutil
  from imagen_video.cli import demo
  src = os.path.dirname(tiny_cascade.stages[0]["workdir"])
  for entry in tiny_cascade.stages:
    shutil.copytree(entry["workdir"], tmp_path / "stages" / entry["name"])
  shutil.copytree(os.path.join(src, "tfds"), tmp_path / "tensorflow_datasets")
  saved = tmp_path / "stages" / "ssr2" / "config.json"
  config = json.loads(saved.read_text())
  config["stage"]["back_projection"] = 7
  saved.write_text(json.dumps(config))
  demo.run(str(tmp_path), demo.PROMPTS[:1], "runlocal")
  out = capsys.readouterr().out
  assert out.count("already trained") == 3, out
  assert re.search(r"stage ssr2: trained with another config \(stage.back_projection 7 -> 0\); moved to "
                   r"\S+/stages/ssr2.old-\d{8}-\d{6}, training it again", out), out
  old = [p for p in (tmp_path / "stages").iterdir() if p.name.startswith("ssr2.old-")]
  assert len(old) == 1 and json.loads((old[0] / "config.json").read_text())["stage"]["back_projection"] == 7
  assert json.loads(saved.read_text())["stage"]["back_projection"] == 0  # the retrained one
  assert (tmp_path / "samples" / "contact_sheet.png").stat().st_size > 0


def test_demo_stage_probe_background_figures():
  """The probe's background breakdown against a frame whose background is known: a uniform
  (10, 20, 30) grey-level offset around one bright square (its W@A-B guidance is
  `guidance.parse_spec`, tested with the guidance specs)."""
  import sys
  root = os.path.dirname(os.path.dirname(CONFIG))
  if root not in sys.path:
    sys.path.insert(0, root)
  from bench import demo_stage_probe
  video = np.broadcast_to(np.array([10, 20, 30], np.float32) / 127.5 - 1, (1, 2, 16, 16, 3)).copy()
  video[:, :, 6:10, 6:10] = 1.0
  assert demo_stage_probe.background(video) == "RGB 10.0 / 20.0 / 30.0 | 5x5 30.0 | >4: 100%"


def test_demo_stage_probe_reads_each_stage_beside_the_data(tiny_cascade, capsys):
  """bench/demo_stage_probe.py (docs/results/demo_quality.md) on the trained tiny stages: the
  data rows read every shape with a black background; every sampled row is reported."""
  import sys
  root = os.path.dirname(os.path.dirname(CONFIG))
  if root not in sys.path:
    sys.path.insert(0, root)
  from bench import demo_stage_probe
  stages = os.path.dirname(tiny_cascade.stages[0]["workdir"])
  demo_stage_probe.main(["base", tiny_cascade.stages[0]["workdir"], "--num", "1", "--settings", "ddim:2:3",
                         "ancestral:4:3@0.25-0.75:none"])
  demo_stage_probe.main(["denoise", tiny_cascade.stages[0]["workdir"], "--num", "2"])
  demo_stage_probe.main(["sr", stages, "--num", "2", "--settings", "ddim:2", "ancestral:2:0.0"])
  spec = f"{CONFIG}:runlocal,root={stages},data_dir={os.path.join(stages, 'tfds')}"
  demo_stage_probe.main(["cascade", "", "--cascade", spec, "--num", "1", "--prompts", "4", "--batch", "2",
                         "--settings", "ddim,ddim,ancestral,ancestral"])
  out = capsys.readouterr().out
  assert re.search(r"base ddim:2:3: shape \d+% direction \d+% color \d+% all \d+% \| background", out)
  # (a runlocal base may leave no dark pixel: then the probe says so)
  bg = r"(RGB [\d.]+ / [\d.]+ / [\d.]+ \| 5x5 [\d.]+ \| >4: \d+%|no background pixels)"
  assert re.search(r"base ancestral:4:3@0.25-0.75:none: shape .* \| " + bg, out)
  assert len(re.findall(r"denoise log-SNR [+-]\d: x0 background " + bg, out)) == 5
  for name, size in (("ssr1", 32), ("ssr2", 64)):
    assert f"{name} data {size}px: shape 100% " in out and "| background 0.00 |" in out
    assert f"{name} ddim:2: shape" in out and f"{name} ancestral:2:0.0: shape" in out
  assert "cascade ddim,ddim,ancestral,ancestral" in out and out.count("| ssr2 | 16x64x64 |") == 1
