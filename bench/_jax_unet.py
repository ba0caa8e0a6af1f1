"""The JAX side of the benchmarks: a base-stage Video U-Net of a given width,
the project's own train step and sampler around it, on random data.

The stage is the real `Stage` (loss with condition dropout, v-objective, DDIM
sampler with classifier-free guidance and dynamic thresholding); only the text
encoder is skipped: the batch carries random "precomputed" T5 embeddings, so the
figures are the U-Net's, not T5's.
"""
from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from imagen_video.diffusion import objectives
from imagen_video.nn import layers, unet
from imagen_video.stage.model import Stage, param_count
from imagen_video.stage.sampler import Request, StageSampler
from imagen_video.text import t5
from imagen_video.text.encoder import EMBEDDINGS, MASK, TextEncoder
from imagen_video.train import optimizer, train_step
from imagen_video.utils import mfu


def model_config(channels: int, *, size: int, text_dim: int, mults=(1, 2, 2), blocks=(1, 1, 2),
                 heads: int = 4, head_dim: int = 32, dtype: str = "float32",
                 attention_backend: str = "xla") -> ml_collections.ConfigDict:
  """A base U-Net of len(mults) levels (32 -> 16 -> 8 at size 32 by default): spatial
  self-attention at the lowest level, text cross-attention at the two lowest,
  temporal attention everywhere; computing in `dtype` (params stay float32)."""
  lowest = size // 2 ** (len(mults) - 1)
  m = unet.default_config()
  m.update(dict(channels=channels, channel_mults=tuple(mults), num_res_blocks=tuple(blocks),
                resolution=size, attn_resolutions=(lowest,), cross_attn_resolutions=(2 * lowest, lowest),
                heads=heads, head_dim=head_dim, norm_groups=8, text_dim=text_dim,
                temporal_mixing="attention", dtype=dtype, attention_backend=attention_backend))
  return m


def stage_config(channels: int, *, size: int, text_dim: int, **model_kw) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = model_config(channels, size=size, text_dim=text_dim, **model_kw)
  c.diffusion = objectives.default_diffusion_config()
  c.stage = ml_collections.ConfigDict(dict(kind="base"))
  c.optim = optimizer.default_optim_config()
  c.optim.update(dict(lr=1e-4, warmup_steps=0))
  return c


def make_stage(config, text_dim: int) -> Stage:
  # A T5 stand-in that only reports its width: embeddings come precomputed in the batch.
  text = TextEncoder(t5.T5Config(d_model=text_dim), graphdef=None, params={}, tokenizer=None,
                     precomputed=True)
  return Stage(config, text_encoder=text)


def random_batch(key, *, batch: int, frames: int, size: int, text_dim: int, text_len: int) -> dict:
  k_video, k_text = jax.random.split(key)
  return {"video": jax.random.uniform(k_video, (batch, frames, size, size, 3), jnp.float32, -1, 1),
          EMBEDDINGS: jax.random.normal(k_text, (batch, text_len, text_dim), jnp.float32),
          MASK: jnp.ones((batch, text_len), bool)}


def host_params(abstract, seed: int = 0, scale: float = 0.02):
  """Random params of the `abstract` shapes drawn on the host: timing does not depend on the
  values, and this skips compiling the network's initialiser (seconds per model on CPU)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.standard_normal(a.shape, np.float32), a.dtype),
                      abstract)


@contextlib.contextmanager
def channels_unpadded():
  """Programs traced inside pad no channels for CPU convolutions (`nn/layers`): XLA's cost
  analysis counts the padded zeros as FLOPs, so work is counted on programs traced here."""
  saved = layers.CPU_CHANNEL_MULTIPLE
  layers.CPU_CHANNEL_MULTIPLE = 1 << 30  # no channel count exceeds it: nothing is padded
  try:
    yield
  finally:
    layers.CPU_CHANNEL_MULTIPLE = saved


class TrainBench:
  """The trainer's step (AdamW with clipping, EMA), jitted ahead of time with the
  state donated, exactly as `train/trainer.py` does on one device. `params`: the U-Net's
  (default: the stage's initialiser)."""

  def __init__(self, stage: Stage, batch: dict, seed: int = 0, params=None):
    tx, _ = optimizer.make_optimizer(stage.config.optim, total_steps=10 ** 6)
    step_fn = train_step.make_train_step(stage, optimizer.tx_for(stage.config.optim, 10 ** 6))
    if params is None:
      self.state = jax.jit(lambda k: train_step.init_state({"unet": stage.init_params(k)}, tx))(
          jax.random.key(seed))
    else:  # eagerly: no initialiser to compile
      self.state = train_step.init_state({"unet": params}, tx)
    self.frozen, self.batch = {"text": {}}, batch
    self.hyper = train_step.hyperparameters(
        optimizer.schedule_values(stage.config.optim, 10 ** 6), ema=0.9999, seed=seed)
    self.compiled = jax.jit(step_fn, donate_argnums=(0,)).lower(
        self.state, self.frozen, batch, self.hyper).compile()
    self.flops = mfu.compiled_flops(self.compiled) or 0.0  # per device per step
    self.params = param_count(self.state["params"]["unet"])

  def step(self):
    """One step; returns its loss (a device scalar, ready)."""
    self.state, metrics = self.compiled(self.state, self.frozen, self.batch, self.hyper)
    return jax.block_until_ready(metrics["loss"])


class SampleBench:
  """`StageSampler.draw`: the compiled `lax.fori_loop` DDIM sampler, guided (one forward
  on a 2B batch per step), with the stage's thresholding."""

  def __init__(self, stage: Stage, params, batch: dict, *, guidance: float = 3.0, seed: int = 0):
    # The batch's clip shape as the stage's output; sampling settings by the request.
    config = stage.config.copy_and_resolve_references()
    _, frames, height, width, _ = batch["video"].shape
    with config.unlocked():
      config.data = ml_collections.ConfigDict(dict(builder=dict(frames=frames, height=height, width=width)))
      config.sample = ml_collections.ConfigDict(dict(steps=1, sampler="ddim", guidance=guidance))
    stage = Stage(config, text_encoder=stage.text)
    # A copy: the train step donates (deletes) the state these params came from.
    self.sampler = StageSampler(stage, {"unet": jax.tree.map(jnp.copy, params)})
    self.request = Request(text=(batch[EMBEDDINGS], batch[MASK]), seed=seed, sampler="ddim",
                           guidance=guidance)

  def run(self, steps: int):
    return self.sampler.draw(dataclasses.replace(self.request, steps=steps))
