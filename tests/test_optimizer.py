"""The learning-rate schedule and the train step's `hyper` input: the schedule is optax's, to
the bit, whether its numbers are constants or traced; runs that differ only in the learning
rate, warm-up, length, EMA decay or seed lower to one program, which computes each run's step."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from imagen_video.train import optimizer, train_step


def _optim(**kw):
  o = optimizer.default_optim_config()
  o.update(kw)
  return o


def _optax_schedule(o, total):
  """The schedules as optax builds them (what `learning_rate` was before it took inputs)."""
  if o.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, o.lr, o.warmup_steps, max(total, o.warmup_steps + 1))
  if not o.warmup_steps:
    return optax.constant_schedule(o.lr)
  return optax.join_schedules([optax.linear_schedule(0.0, o.lr, o.warmup_steps), optax.constant_schedule(o.lr)],
                              [o.warmup_steps])


@pytest.mark.parametrize("schedule,lr,warmup,total", [
    ("constant", 3e-4, 0, 50), ("constant", 1e-4, 7, 50), ("cosine", 2e-3, 0, 37), ("cosine", 5e-4, 10, 41),
    ("cosine", 1e-3, 12, 5)])
def test_schedule_is_optaxs_with_constant_or_traced_numbers(schedule, lr, warmup, total):
  o = _optim(schedule=schedule, lr=lr, warmup_steps=warmup)
  counts = jnp.arange(0, max(total, warmup) + 6, dtype=jnp.int32)
  # Eagerly (the trainer's logged lr): optax's float operations, so its values to the bit.
  want = np.asarray(jax.vmap(_optax_schedule(o, total))(counts))
  host = np.asarray(jax.vmap(optimizer.learning_rate(o, total))(counts))
  np.testing.assert_array_equal(host, want)
  # Compiled with the numbers as inputs (the step): XLA folds optax's constants differently
  # (a * b + c in one rounding, the cosine's argument), so equal to float32 rounding.
  traced = jax.jit(lambda v, c: jax.vmap(optimizer.learning_rate(o, 1, v))(c))(
      optimizer.schedule_values(o, total), counts)  # `total` reaches it only through the values
  np.testing.assert_allclose(np.asarray(traced), want, rtol=2e-5, atol=1e-6 * lr)
  assert want[warmup] == np.float32(lr) and want.min() >= 0


def test_a_bad_schedule_is_named():
  with pytest.raises(ValueError, match="config.optim.schedule='linear': expected 'constant' or 'cosine'"):
    optimizer.schedule_values(_optim(schedule="linear"), 10)


class _Quadratic:
  """A stand-in stage: a noisy least-squares loss, so the seed, lr and EMA all show."""

  def loss(self, unet, text, batch, rng, teacher_params=None):
    noise = 0.1 * jax.random.normal(rng, batch["y"].shape)
    return jnp.mean(jnp.square(batch["x"] @ unet["w"] - batch["y"] + noise)), {}


def test_runs_differing_only_in_hyperparameters_share_one_program_and_each_gets_its_own_step():
  params = {"unet": {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3)}}
  batch = {"x": jnp.arange(24, dtype=jnp.float32).reshape(6, 4) / 10,
           "y": jnp.ones((6, 3), jnp.float32)}
  runs = [dict(lr=1e-3, warmup_steps=0, steps=10, ema=0.999, seed=0),
          dict(lr=5e-2, warmup_steps=3, steps=40, ema=0.9, seed=7)]
  texts = []
  for run in runs:
    o = _optim(schedule="cosine", lr=run["lr"], warmup_steps=run["warmup_steps"], weight_decay=0.01)
    tx, _ = optimizer.make_optimizer(o, run["steps"])
    step = train_step.make_train_step(_Quadratic(), optimizer.tx_for(o, run["steps"]))
    hyper = train_step.hyperparameters(optimizer.schedule_values(o, run["steps"]), run["ema"], run["seed"])
    state = train_step.init_state(params, tx)
    lowered = jax.jit(step).lower(state, {}, batch, hyper)
    texts.append(lowered.as_text())
    run_step = lowered.compile()
    # The same three steps by hand: optax's own schedule and AdamW, the EMA formula, the seed's keys.
    ref_tx = optax.chain(optax.clip_by_global_norm(o.grad_clip),
                         optax.adamw(_optax_schedule(o, run["steps"]), b1=o.b1, b2=o.b2, eps=o.eps,
                                     weight_decay=o.weight_decay))
    p, opt, ema = params, ref_tx.init(params), params
    for i in range(3):
      state, metrics = run_step(state, {}, batch, hyper)
      rng = jax.random.fold_in(jax.random.key(run["seed"]), i)
      loss, grads = jax.value_and_grad(lambda q: _Quadratic().loss(q["unet"], None, batch, rng)[0])(p)
      updates, opt = ref_tx.update(grads, opt, p)
      p = optax.apply_updates(p, updates)
      d = min(run["ema"], (1.0 + i) / (10.0 + i))
      ema = jax.tree.map(lambda e, q: e + (1.0 - np.float32(d)) * (q - e), ema, p)
      np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-6)
      np.testing.assert_allclose(state["params"]["unet"]["w"], p["unet"]["w"], rtol=1e-6, atol=1e-7)
      np.testing.assert_allclose(state["ema"]["unet"]["w"], ema["unet"]["w"], rtol=1e-6, atol=1e-7)
    assert not np.allclose(state["params"]["unet"]["w"], params["unet"]["w"])
  assert texts[0] == texts[1]  # one program for both runs

