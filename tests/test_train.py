"""Training loop: resume equality, 1 vs 8 devices, sampling CLI, guidance without recompiles."""
import json
import os

import jax
import numpy as np
import pytest

from imagen_video.parallel import sharding
from imagen_video.train import trainer
from imagen_video.utils import configs_loader

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "base_tiny.py")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, arg="runlocal", **train):
  c = configs_loader.load(f"{CONFIG}:{arg}")
  c.data.data_dir = data_dir
  c.train.update(train)
  return c


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  """Per-step losses of an uninterrupted runlocal run (8 steps, checkpoints every 4)."""
  return trainer.train_and_evaluate(_config(data_dir), str(tmp_path_factory.mktemp("full")))["losses"]


def test_interrupted_run_resumes_with_identical_losses(data_dir, reference, tmp_path):
  full = reference
  workdir = str(tmp_path / "interrupted")
  first = trainer.train_and_evaluate(_config(data_dir), workdir, stop_after=6)["losses"]
  assert [s for s, _ in first] == [1, 2, 3, 4, 5, 6]
  second = trainer.train_and_evaluate(_config(data_dir), workdir)["losses"]
  assert [s for s, _ in second] == [5, 6, 7, 8]  # resumed from the step-4 checkpoint
  np.testing.assert_allclose([l for _, l in second], [l for s, l in full if s >= 5], rtol=0, atol=0)
  logged = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics_train.jsonl"))]
  assert logged == [1, 2, 3, 4, 5, 6, 7, 8]  # steps 5-6 of the stopped run are not logged twice
  # Sampling restores the EMA alone (partial restore), identical to the saved full state's.
  from imagen_video.stage import loading
  from imagen_video.workdir import checkpoints
  _, ema, step = loading.load(workdir)
  ckpt = checkpoints.Checkpoints(os.path.join(workdir, "checkpoints"), async_save=False)
  import orbax.checkpoint as ocp
  full_state = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  ckpt.close()
  # Paths as "unet/down/0/..." (nnx States use int keys and `.value`; saved dicts str keys).
  name = lambda e: str(getattr(e, "key", getattr(e, "name", getattr(e, "idx", e))))
  flat = lambda tree: {"/".join(map(name, p)): np.asarray(x)
                       for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  loaded = flat(ema)
  saved = flat(full_state["ema"])
  assert step == 8 and loaded.keys() == saved.keys()
  for key in saved:
    np.testing.assert_array_equal(loaded[key], saved[key], err_msg=key)


def test_eight_devices_fsdp_match_one_device(data_dir, tmp_path):
  one = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  eight = sharding.make_mesh((2, 4, 1))
  a = trainer.train_and_evaluate(_config(data_dir, "runlocal,batch=8", steps=8, ckpt_every=100),
                                 str(tmp_path / "one"), mesh=one)
  b = trainer.train_and_evaluate(_config(data_dir, "runlocal,batch=8", steps=8, ckpt_every=100),
                                 str(tmp_path / "eight"), mesh=eight)
  la, lb = np.array([l for _, l in a["losses"]]), np.array([l for _, l in b["losses"]])
  assert len(la) == len(lb) == 8
  np.testing.assert_allclose(la, lb, rtol=2e-4, atol=2e-5)
  # Params really are split over fsdp: some leaf holds a quarter of its rows per device.
  specs = [x.sharding.spec for x in jax.tree.leaves(b["state"]["params"])]
  assert any("fsdp" in str(s) for s in specs)
  leaf = next(x for x in jax.tree.leaves(b["state"]["params"]) if "fsdp" in str(x.sharding.spec))
  assert leaf.addressable_shards[0].data.size * 4 == leaf.size
  # Optimizer moments are sharded like the params they track.
  opt_specs = [x.sharding.spec for x in jax.tree.leaves(b["state"]["opt"]) if x.ndim > 1]
  assert any("fsdp" in str(s) for s in opt_specs)


def test_sample_cli_batch_form_and_guidance_without_recompiling(data_dir, tmp_path, capsys):
  from imagen_video.cli import main as cli
  from imagen_video.diffusion import samplers
  workdir = str(tmp_path / "wd")
  trainer.train_and_evaluate(_config(data_dir, steps=2, ckpt_every=2), workdir)
  log = capsys.readouterr().out
  assert "FLOPs per device per step (XLA cost analysis); MFU against measured CPU fp32 matmul peak" in log
  assert all("TFLOP/s/device MFU" in l for l in log.splitlines() if l.startswith("[train] step"))
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("a red circle moving left\na blue square moving up\n")
  out_dir = tmp_path / "samples"
  base = ["sample", "--config", f"{CONFIG}:runlocal", f"--config.data.data_dir={data_dir}",
          "--workdir", workdir, "--steps", "3"]
  before = samplers._sample_loop._cache_size()
  assert cli.main(base + ["--prompts", str(prompts), "--out_dir", str(out_dir), "--num", "2"]) == 0
  records = [json.loads(l) for l in open(out_dir / "samples.jsonl")]
  assert [r["prompt"] for r in records] == ["a red circle moving left"] * 2 + ["a blue square moving up"] * 2
  assert all((out_dir / r["file"]).exists() for r in records)
  assert [r["seed"] for r in records] == [0, 1, 2, 3]  # sample i of prompt p: seed + p * num + i
  compiled = samplers._sample_loop._cache_size() - before
  timed = [l for l in capsys.readouterr().out.splitlines() if l.startswith("  sampler ")]
  assert len(timed) == 2 and all("3 steps" in l and "ms/step" in l and "MFU" in l for l in timed)
  # Any listed sample is redrawn alone from its prompt and seed (the one seed rule).
  from imagen_video.media import video_io
  assert cli.main(base + ["--prompt", records[3]["prompt"], "--seed", "3", "--out", str(tmp_path / "r.mp4")]) == 0
  again, listed = (video_io.read_video(p)[0].astype(int) for p in (tmp_path / "r.mp4", out_dir / records[3]["file"]))
  assert again.shape == listed.shape and np.abs(again - listed).mean() < 1.0
  other = video_io.read_video(out_dir / records[2]["file"])[0].astype(int)
  assert np.abs(other - listed).mean() > 1.0
  assert (out_dir / "contact_sheet.png").exists()
  before = samplers._sample_loop._cache_size()
  for w in (2.0, 7.5):
    assert cli.main(base + ["--prompt", "a red circle moving left", "--num", "2",
                            "--guidance", str(w), "--out", str(tmp_path / f"g{w}.mp4")]) == 0
  assert compiled == 1
  # New guidance weights reuse the compiled sampler (same batch, steps, shapes).
  assert samplers._sample_loop._cache_size() - before == 0
  # A constant weight of 1 is the plain conditional model: one unguided sampler (half the batch).
  assert cli.main(base + ["--prompt", "a red circle moving left", "--num", "2",
                          "--guidance", "1", "--out", str(tmp_path / "g1.mp4")]) == 0
  assert samplers._sample_loop._cache_size() - before == 1


def test_a_checkpoint_is_not_sampled_under_another_parameterisation(tmp_path):
  import ml_collections
  from imagen_video.stage import loading
  # an SR stage trained before the residual scale replaced the schedule shift
  (tmp_path / "config.json").write_text(json.dumps(
      {"diffusion": {"objective": "v", "resolution_shift": 8.0}, "stage": {"kind": "tsr"}, "model": {}}))
  config = ml_collections.ConfigDict({"diffusion": {"objective": "v", "resolution_shift": 1.0},
                                      "stage": {"kind": "tsr", "residual_scale": 8.0}, "model": {}})
  with pytest.raises(ValueError, match=r"disagrees with the one the checkpoint was trained with on "
                     r"diffusion.resolution_shift \(trained 8.0, given 1.0\); stage.residual_scale "
                     r"\(trained None, given 8.0\)"):
    loading.resolve(str(tmp_path), config)
  with config.unlocked():
    config.diffusion.resolution_shift = 8.0
    del config.stage["residual_scale"]
  assert loading.resolve(str(tmp_path), config).diffusion.resolution_shift == 8.0


def test_config_evals_run_during_training_and_a_bad_one_stops_it_first(data_dir, tmp_path):
  import ml_collections
  config = _config(data_dir, steps=4, ckpt_every=4)
  config.evals = ml_collections.ConfigDict({"caption": dict(type="caption", every=4, num=1)})
  workdir = tmp_path / "evals"
  trainer.train_and_evaluate(config, str(workdir))
  report = json.loads((workdir / "eval" / "caption" / "step_0000004" / "caption_eval.json").read_text())
  assert report["samples"] == 28 and report["shape"] == "8x16x16"
  logged = [json.loads(line) for line in open(workdir / "metrics_train.jsonl")]
  at4 = [r for r in logged if r["step"] == 4 and "eval/caption/color" in r]
  assert at4 and at4[0]["eval/caption/color"] == report["accuracy"]["color"]
  for bad, message in (({"type": "caption", "every": 0}, "every=0: expected a step interval"),
                       ({"type": "caption", "every": 2, "nmu": 1}, r"unknown option\(s\) \['nmu'\]"),
                       ({"type": "cation", "every": 2}, "evaluator 'cation': expected one of")):
    config.evals = ml_collections.ConfigDict({"x": bad})
    with pytest.raises(ValueError, match=message):
      trainer.train_and_evaluate(config, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()  # refused before anything was written


@pytest.mark.slow
def test_kill_9_between_checkpoints_resumes_with_the_uninterrupted_losses(data_dir, reference, tmp_path):
  """SIGKILL a training process (the CLI) after its step-4 checkpoint and two more steps; the
  restarted run's per-step losses equal an uninterrupted run's, bit for bit (from the metrics
  file, which keeps each step once)."""
  import subprocess
  import sys
  from killing import kill_when
  steps = len(reference)
  workdir = tmp_path / "killed"
  cmd = [sys.executable, "-m", "imagen_video.cli.main", "train", "--config", f"{CONFIG}:runlocal",
         f"--config.data.data_dir={data_dir}", "--workdir", str(workdir)]
  # Killed once step 6 is logged and the step-4 checkpoint is final.
  kill_when(cmd, "[train] step 6/", ready=lambda: (workdir / "checkpoints" / "4").is_dir())
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert "resumed from" in again.stdout and "step 4 (data position 4)" in again.stdout
  assert "LOCK.json: took over the lock of a run that is gone" in again.stdout  # the killed run's
  logged = [json.loads(line) for line in open(workdir / "metrics_train.jsonl")]
  assert [r["step"] for r in logged] == list(range(1, steps + 1))  # no step logged twice
  assert [r["loss"] for r in logged] == [loss for _, loss in reference]  # exactly
