"""The stage sampler's per-run timing: FLOPs per step from the compiled loop against the
U-Net forward compiled alone, ms per step, and MFU."""
import os

import jax
import jax.numpy as jnp
import pytest

from imagen_video.stage.model import Stage
from imagen_video.stage.sampler import Request, StageSampler
from imagen_video.utils import configs_loader, mfu

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "base_tiny.py")


def test_a_sampler_run_reports_one_guided_forward_of_flops_per_step():
  config = configs_loader.load(f"{CONFIG}:runlocal")
  config.text.tokenizer = ""  # text given as embeddings: no prepared dataset needed
  stage = Stage(config)
  params = {"unet": stage.init_params(jax.random.key(0))}
  length, batch = config.text.max_length, 2
  text = (jnp.zeros((batch, length, stage.text.d_model)), jnp.ones((batch, length), bool))
  sampler = StageSampler(stage, params)
  for steps in (2, 4):
    sampler.draw(Request(text=text, steps=steps, guidance=3.0))
  two, four = sampler.timings
  # Independently: one U-Net forward on the guided batch (conditional + null text halves).
  shape = (2 * batch,) + stage.output_shape(batch)[1:]
  cond = {"text_emb": jnp.zeros((2 * batch, length, stage.text.d_model)),
          "text_mask": jnp.ones((2 * batch, length), bool), "drop_text": jnp.arange(2 * batch) >= batch}
  forward = mfu.compiled_flops(jax.jit(stage.model_fn).lower(
      params["unet"], jnp.zeros(shape), jnp.zeros((2 * batch,)), cond).compile())
  assert two.flops_per_step == pytest.approx(forward, rel=0.05)
  assert four.flops_per_step == pytest.approx(two.flops_per_step, rel=0.02)
  assert (two.steps, four.steps) == (2, 4) and four.ms_per_step == pytest.approx(1e3 * four.run_s / 4)
  speed = four.throughput()
  assert speed["tflops_per_device"] == pytest.approx(four.flops_per_step / (four.run_s / 4) / 1e12)
  assert speed["mfu"] == pytest.approx(speed["tflops_per_device"] * 1e12 / four.peak.flops)
  line = four.describe()
  assert "4 steps" in line and "ms/step" in line and "MFU" in line and "measured CPU" in line
