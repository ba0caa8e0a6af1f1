"""Optimizer from `config.optim`: AdamW, warmup + cosine/constant, clipping, accumulation.

  optim.lr, optim.warmup_steps, optim.schedule ("cosine" | "constant"),
  optim.b1, optim.b2, optim.eps, optim.weight_decay, optim.grad_clip (0 = off),
  optim.grad_accum_steps (micro-batches per update; 1 = off)
  optim.trainable ("all" | "temporal": only the temporal mixing layers update, the spatial
                   ones stay frozen, e.g. an inflated image model; absent = "all")
"""
from __future__ import annotations

import jax
import ml_collections
import optax


def default_optim_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      lr=1e-4, warmup_steps=1000, schedule="constant", b1=0.9, b2=0.99, eps=1e-8,
      weight_decay=0.0, grad_clip=1.0, grad_accum_steps=1))


def learning_rate(optim, total_steps: int) -> optax.Schedule:
  warmup = max(int(optim.warmup_steps), 0)
  if optim.schedule == "constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, optim.lr, max(warmup, 1)), optax.constant_schedule(optim.lr)],
        [max(warmup, 1)]) if warmup else optax.constant_schedule(optim.lr)
  if optim.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, optim.lr, warmup, max(total_steps, warmup + 1))
  raise ValueError(f"config.optim.schedule={optim.schedule!r}: expected 'constant' or 'cosine'")


def make_optimizer(optim, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  schedule = learning_rate(optim, total_steps)
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


TEMPORAL_LAYERS = ("temporal", "temporal_conv")  # nn.blocks.SpaceTimeBlock's temporal mixing


def temporal_labels(params):
  """'train' for the parameters of temporal mixing layers, 'freeze' for the rest."""
  def label(path, _):
    names = {str(getattr(k, "key", getattr(k, "name", k))) for k in path}
    return "train" if names & set(TEMPORAL_LAYERS) else "freeze"
  return jax.tree_util.tree_map_with_path(label, params)
