"""Optimizer from `config.optim`: AdamW, warmup + cosine/constant, clipping, accumulation.

  optim.lr, optim.warmup_steps, optim.schedule ("cosine" | "constant"),
  optim.b1, optim.b2, optim.eps, optim.weight_decay, optim.grad_clip (0 = off),
  optim.grad_accum_steps (micro-batches per update; 1 = off)
  optim.trainable ("all" | "temporal": only the temporal mixing layers update, the spatial
                   ones stay frozen, e.g. an inflated image model; absent = "all")
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax


def default_optim_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      lr=1e-4, warmup_steps=1000, schedule="constant", b1=0.9, b2=0.99, eps=1e-8,
      weight_decay=0.0, grad_clip=1.0, grad_accum_steps=1))


def schedule_values(optim, total_steps: int) -> dict:
  """The learning-rate schedule's numbers: the train step takes them as inputs, so runs that
  differ only in them (a learning-rate sweep, a longer run, another warm-up) share one
  compiled step. Only `optim.schedule` (the formula) is part of the program."""
  warmup = max(int(optim.warmup_steps), 0)
  if optim.schedule not in ("constant", "cosine"):
    raise ValueError(f"config.optim.schedule={optim.schedule!r}: expected 'constant' or 'cosine'")
  decay = max(int(total_steps), warmup + 1) - warmup  # cosine only
  return {"lr": np.float32(optim.lr), "warmup": np.float32(warmup), "decay": np.float32(decay)}


def learning_rate(optim, total_steps: int, values: dict | None = None) -> optax.Schedule:
  """count -> learning rate: linear warm-up from 0, then constant or cosine decay to 0 (optax's
  `join_schedules` / `warmup_cosine_decay_schedule`, the same float operations, with the
  numbers from `values`, traced in the step, or else from `optim`)."""
  v = schedule_values(optim, total_steps) if values is None else values
  lr, warmup, decay = v["lr"], v["warmup"], v["decay"]
  cosine = optim.schedule == "cosine"

  # optax's expressions written out with its defaults (init 0, alpha 0, exponent 1) kept, so
  # the logged (eager) values equal optax's to the bit (tests/test_optimizer.py).
  def schedule(count):
    frac = 1 - jnp.clip(count, 0, jnp.maximum(warmup, 1)) / jnp.maximum(warmup, 1)
    ramp = (0.0 - lr) * frac ** 1 + lr
    after = lr
    if cosine:
      cosine_decay = 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(count - warmup, decay) / decay))
      after = lr * ((1 - 0.0) * cosine_decay ** 1.0 + 0.0)
    return jnp.where(count < warmup, ramp, after)
  return schedule


def make_optimizer(optim, total_steps: int, values: dict | None = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(AdamW with clipping, its schedule); `values`: `schedule_values`, traced in the step."""
  schedule = learning_rate(optim, total_steps, values)
  parts = []
  if optim.grad_clip:
    parts.append(optax.clip_by_global_norm(optim.grad_clip))
  parts.append(optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                           weight_decay=optim.weight_decay))
  tx = optax.chain(*parts)
  trainable = optim.get("trainable", "all")
  if trainable == "temporal":  # frozen params get zero updates and keep no Adam moments
    tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, temporal_labels)
  elif trainable != "all":
    raise ValueError(f"config.optim.trainable={trainable!r}: expected 'all' or 'temporal'")
  return tx, schedule


def tx_for(optim, total_steps: int):
  """values -> the optimizer over them (the train step's `tx_for`)."""
  return lambda values: make_optimizer(optim, total_steps, values)[0]


TEMPORAL_LAYERS = ("temporal", "temporal_conv")  # nn.blocks.SpaceTimeBlock's temporal mixing


def temporal_labels(params):
  """'train' for the parameters of temporal mixing layers, 'freeze' for the rest."""
  def label(path, _):
    names = {str(getattr(k, "key", getattr(k, "name", k))) for k in path}
    return "train" if names & set(TEMPORAL_LAYERS) else "freeze"
  return jax.tree_util.tree_map_with_path(label, params)
