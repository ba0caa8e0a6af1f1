"""Samplers against analytic denoisers; guidance batching; no recompiles on guidance."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sampler_call import model_fn_of, run_sampler  # noqa: E402 (tests/ is on sys.path)
from imagen_video.diffusion import objectives, schedule

SHAPE = (2048, 1, 1, 1, 2)


def gaussian_model(mu_cond, mu_uncond=0.0, std=0.5, trace_log=None):
  """Exact v-prediction for data x0 ~ N(mu, std^2) per element; mu = state['mu'] * cond
  shift (cond) or mu_uncond (drop_text). `trace_log` records every trace (= compile)."""
  def model_fn(state, z, log_snr, cond):
    if trace_log is not None:
      trace_log.append(z.shape)
    drop = cond.get("drop_text", jnp.zeros(z.shape[0], bool))
    mu = jnp.where(drop, mu_uncond, state["mu"] * cond["shift"])[:, None, None, None, None]
    a, s = schedule.alpha_sigma(log_snr)
    a, s = a[:, None, None, None, None], s[:, None, None, None, None]
    x0 = mu + a * std ** 2 / (a ** 2 * std ** 2 + s ** 2) * (z - a * mu)  # E[x0 | z]
    return objectives.x0_eps_to_pred(x0, (z - a * x0) / s, log_snr, "v")
  return model_fn


@pytest.mark.parametrize("sampler,gamma", [("ddim", 0.0), ("ancestral", 0.0), ("ancestral", 0.7),
                                           ("dpm++2m", 0.0), ("stochastic", 0.0)])
def test_sampler_recovers_gaussian_data(sampler, gamma):
  fn = gaussian_model(1.0)
  out = run_sampler(fn, {"mu": jnp.float32(1.5)}, {"shift": jnp.ones(SHAPE[0])},
                        0, shape=SHAPE, steps=128, sampler=sampler, gamma=gamma,
                        guided=False, thresholding="none")
  assert out.shape == SHAPE
  assert float(jnp.mean(out)) == pytest.approx(1.5, abs=0.03)
  assert float(jnp.std(out)) == pytest.approx(0.5, abs=0.03)


def test_dpm_solver_follows_the_exact_ode_in_few_steps():
  """Gaussian data: the probability-flow ODE keeps xi = (z - alpha mu) / sqrt(alpha^2 std^2 +
  sigma^2) constant, so the exact output from given noise is known in closed form."""
  mu, std, steps = 0.8, 0.5, 40
  fn = gaussian_model(1.0, std=std)
  noise = jax.random.normal(jax.random.key(5), SHAPE)
  a1, s1 = schedule.alpha_sigma(schedule.logsnr_schedule_cosine(1.0))
  xi = (noise - a1 * mu) / jnp.sqrt(a1 ** 2 * std ** 2 + s1 ** 2)
  a, s = schedule.alpha_sigma(schedule.logsnr_schedule_cosine(1.0 / steps))  # the last x0_hat's level
  exact = mu + a * std ** 2 * xi / jnp.sqrt(a ** 2 * std ** 2 + s ** 2)
  err = {}
  for sampler in ("ddim", "dpm++2m"):
    out = run_sampler(fn, {"mu": jnp.float32(mu)}, {"shift": jnp.ones(SHAPE[0])}, 0,
                          shape=SHAPE, steps=steps, sampler=sampler, guided=False,
                          thresholding="none", noise=noise)
    err[sampler] = float(jnp.sqrt(jnp.mean((out - exact) ** 2)))
  assert err["dpm++2m"] < err["ddim"] / 3, err
  assert err["dpm++2m"] < 0.01, err


def test_ddim_converges_to_a_data_point():
  fn = gaussian_model(1.0, std=1e-4)
  out = run_sampler(fn, {"mu": jnp.float32(-0.3)}, {"shift": jnp.ones(4)}, 1,
                        shape=(4, 2, 3, 3, 1), steps=64, guided=False, thresholding="none")
  np.testing.assert_allclose(out, -0.3, atol=1e-3)


def test_guidance_batches_cond_and_uncond_and_never_recompiles():
  log = []
  fn = gaussian_model(1.0, mu_uncond=0.0, std=1e-3, trace_log=log)
  cond = {"shift": jnp.ones(4)}
  run = lambda w, state=0.5: run_sampler(fn, {"mu": jnp.float32(state)}, cond, 2,
                                             shape=(4, 1, 2, 2, 1), steps=16, guidance=w,
                                             thresholding="none")
  out1 = run(1.0)
  # One traced forward on a 2B batch (cond + uncond together); loop body traced once.
  assert log == [(8, 1, 2, 2, 1)]
  np.testing.assert_allclose(out1, 0.5, atol=1e-2)  # w = 1: the conditional model
  out3 = run(3.0)  # uncond + 3 (cond - uncond) = 1.5 for point-like data
  np.testing.assert_allclose(out3, 1.5, atol=2e-2)
  run(np.array([15.0, 1.0] * 8))  # oscillating schedule
  run(np.linspace(1, 4, 16)[:, None] * np.ones(4))  # per step and sample
  run(2.0, state=0.7)  # new model state, same structure
  assert len(log) == 1, f"recompiled: {log}"


def test_dynamic_thresholding_in_sampler():
  fn = gaussian_model(1.0, std=1e-3)  # data at 3.0, far outside [-1, 1]
  kw = dict(shape=(2, 1, 2, 2, 1), steps=8, guided=False)
  state, cond = {"mu": jnp.float32(3.0)}, {"shift": jnp.ones(2)}
  dyn = run_sampler(fn, state, cond, 3, thresholding="dynamic", **kw)
  assert float(jnp.abs(dyn).max()) <= 1.0 + 1e-5
  free = run_sampler(fn, state, cond, 3, thresholding="none", **kw)
  np.testing.assert_allclose(free, 3.0, atol=1e-2)


def test_sampler_with_video_unet():
  """The real network: CFG forward, image frames, SR inputs."""
  from test_unet import make, tiny_config  # pytest puts tests/ on sys.path
  cfg = tiny_config(temporal_mixing="conv", cond_channels=3, use_aug_level_embedding=True,
                    channel_mults=(1,), num_res_blocks=(1,), attn_resolutions=(), cross_attn_resolutions=(8,))
  graphdef, state = make(cfg)
  b, t, s = 2, 4, 8
  cond = {"text_emb": jnp.ones((b, 3, 12)), "text_mask": jnp.ones((b, 3), bool),
          "cond_video": jnp.zeros((b, t, s, s, 3)), "aug_level": jnp.full((b,), 0.2),
          "is_image": jnp.array([True, False])}
  fn = model_fn_of(graphdef)
  out = run_sampler(fn, state, cond, 0, shape=(b, t, s, s, 3), steps=3,
                        sampler="ancestral", guidance=5.0, gamma=0.3)
  assert out.shape == (b, t, s, s, 3) and bool(jnp.all(jnp.abs(out) <= 1.0 + 1e-5))


@pytest.mark.parametrize("start", [0.3, 0.6])
def test_sdedit_draws_from_the_posterior_given_the_noised_init(start):
  """Gaussian data N(mu, std^2): z = a init + s eps at time `start`, then the ancestral sampler
  draws x0 ~ p(x0 | z), whose mean over eps is mu + k (init - mu), k = a^2 std^2 / (a^2 std^2 + s^2),
  and whose variance is that posterior's plus the spread of its mean over eps."""
  mu, std, init = 0.2, 0.5, 1.4
  fn = gaussian_model(1.0, std=std)
  out = run_sampler(fn, {"mu": jnp.float32(mu)}, {"shift": jnp.ones(SHAPE[0])}, 3,
                        shape=SHAPE, steps=48, sampler="ancestral", guided=False, thresholding="none",
                        init=jnp.full(SHAPE, init), start=start)
  a, s = schedule.alpha_sigma(schedule.logsnr_schedule_cosine(start))
  k = float(a ** 2 * std ** 2 / (a ** 2 * std ** 2 + s ** 2))
  post_var = std ** 2 * s ** 2 / (a ** 2 * std ** 2 + s ** 2)
  spread_var = (a * std ** 2 / (a ** 2 * std ** 2 + s ** 2)) ** 2 * s ** 2
  assert float(jnp.mean(out)) == pytest.approx(mu + k * (init - mu), abs=0.03)
  assert float(jnp.std(out)) == pytest.approx(float(jnp.sqrt(post_var + spread_var)), abs=0.03)


def test_sdedit_from_a_low_start_keeps_the_init_and_bad_starts_are_refused():
  fn = gaussian_model(1.0, std=0.5)
  init = jax.random.uniform(jax.random.key(4), (4, 2, 3, 3, 1), minval=-1, maxval=1)
  out = run_sampler(fn, {"mu": jnp.float32(0.0)}, {"shift": jnp.ones(4)}, 1,
                        shape=init.shape, steps=4, guided=False, thresholding="none", init=init, start=0.005)
  np.testing.assert_allclose(out, init, atol=0.05)  # sigma(0.005) = 0.008
  for start, given in ((0.5, None), (0.0, init), (1.5, init)):
    with pytest.raises(ValueError, match="start="):
      run_sampler(fn, {"mu": jnp.float32(0.0)}, {"shift": jnp.ones(4)}, 1,
                      shape=init.shape, steps=4, guided=False, init=given, start=start)
