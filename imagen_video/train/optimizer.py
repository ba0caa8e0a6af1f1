"""Optimizer from `config.optim`: AdamW, warmup + cosine/constant, clipping, accumulation.

  optim.lr, optim.warmup_steps, optim.schedule ("cosine" | "constant"),
  optim.b1, optim.b2, optim.eps, optim.weight_decay, optim.grad_clip (0 = off),
  optim.grad_accum_steps (micro-batches per update; 1 = off)
"""
from __future__ import annotations

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
  return tx, schedule
