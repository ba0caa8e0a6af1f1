"""Train state and the train step (pure functions, jitted by the trainer).

state = {"step": int32, "params": {"unet": ..., ["text": ...]}, "ema": same, "opt": optax state}

Frozen text-encoder params (and a distillation teacher's, frozen["teacher"]) travel
as a separate argument (`frozen`), so they are neither donated nor updated. The
step's RNG is fold_in(seed key, step), so a resumed run draws exactly the numbers
an uninterrupted one would.

The step's numbers that are not shapes (the learning-rate schedule's, the EMA decay, the seed)
come in as `hyper` (`hyperparameters`), not as constants of the program: runs that differ only
in them run one compiled step (on CPU the persistent compilation cache serves it across
processes; an lr sweep on a pod compiles once).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imagen_video.train import optimizer


def init_state(params: dict, tx: optax.GradientTransformation) -> dict:
  return {"step": jnp.zeros((), jnp.int32), "params": params,
          "ema": jax.tree.map(jnp.copy, params), "opt": tx.init(params)}


def ema_decay(step, decay: float, warmup: bool = True):
  """EMA decay, ramped up early so the average is not dominated by the init."""
  if not warmup:
    return jnp.asarray(decay, jnp.float32)
  s = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + s) / (10.0 + s))


def hyperparameters(schedule: dict, ema: float, seed: int) -> dict:
  """The step's `hyper` argument: `optimizer.schedule_values`, the EMA decay and the seed."""
  return {"schedule": dict(schedule), "ema": np.float32(ema), "seed": np.int32(seed)}


def run_hyperparameters(config) -> dict:
  """`hyperparameters` of a run's config: its optimizer's schedule over `train.steps`, its
  `train.ema_decay` and `train.seed` (what the trainer feeds the step and AOT compiles for)."""
  t = config.train
  return hyperparameters(optimizer.schedule_values(config.optim, t.steps), t.ema_decay, t.seed)


def make_train_step(stage, tx_for: Callable[[dict], optax.GradientTransformation], *,
                    accum_steps: int = 1):
  """train_step(state, frozen, batch, hyper) -> (state, metrics); `tx_for(hyper["schedule"])`:
  the optimizer over the schedule's traced numbers (`optimizer.make_optimizer`)."""

  def loss_fn(params, frozen, batch, rng):
    text_params = params.get("text", frozen.get("text"))
    loss, aux = stage.loss(params["unet"], text_params, batch, rng,
                           teacher_params=frozen.get("teacher"))
    return loss, aux

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state, frozen, batch, hyper):
    rng = jax.random.fold_in(jax.random.key(hyper["seed"]), state["step"])
    params = state["params"]
    if accum_steps == 1:
      (loss, _), grads = grad_fn(params, frozen, batch, rng)
    else:
      micro = jax.tree.map(lambda x: x.reshape(accum_steps, x.shape[0] // accum_steps, *x.shape[1:]),
                           batch)

      def body(carry, inputs):
        i, mb = inputs
        (l, _), g = grad_fn(params, frozen, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (l, g)), None
      zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
      (loss, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), micro))
      loss, grads = jax.tree.map(lambda x: x / accum_steps, (loss, grads))
    updates, opt = tx_for(hyper["schedule"]).update(grads, state["opt"], params)
    new_params = optax.apply_updates(params, updates)
    d = ema_decay(state["step"], hyper["ema"])
    new_ema = jax.tree.map(lambda e, p: e + (1.0 - d) * (p - e), state["ema"], new_params)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads),
               "param_norm": optax.global_norm(new_params)}
    return {"step": state["step"] + 1, "params": new_params, "ema": new_ema, "opt": opt}, metrics

  return train_step
