"""Schedule, objective conversions, loss weights, loss masking, guidance helpers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagen_video.diffusion import guidance, objectives, schedule


def test_cosine_schedule_endpoints_monotone_shift_inverse():
  t = jnp.linspace(0, 1, 101)
  ls = schedule.logsnr_schedule_cosine(t)
  np.testing.assert_allclose([ls[0], ls[-1]], [20.0, -20.0], atol=5e-3)  # fp32 tan near pi/2
  assert bool(jnp.all(jnp.diff(ls) < 0))
  np.testing.assert_allclose(schedule.logsnr_schedule_cosine(0.5), 0.0, atol=1e-5)  # cosine midpoint
  shifted = schedule.logsnr_schedule_cosine(t, shift=0.25)
  np.testing.assert_allclose(shifted - ls, 2 * np.log(0.25), atol=1e-4)
  t_mid = t[1:-1]
  back = schedule.t_from_logsnr_cosine(schedule.logsnr_schedule_cosine(t_mid, shift=0.5), shift=0.5)
  np.testing.assert_allclose(back, t_mid, atol=1e-4)
  a, s = schedule.alpha_sigma(ls)
  np.testing.assert_allclose(a ** 2 + s ** 2, 1.0, atol=1e-6)
  np.testing.assert_allclose(jnp.log(a[1:-1] ** 2 / s[1:-1] ** 2), ls[1:-1], atol=1e-3)


@pytest.mark.parametrize("objective", objectives.OBJECTIVES)
def test_objective_conversions_round_trip(objective):
  k = jax.random.split(jax.random.key(0), 2)
  x0 = jax.random.normal(k[0], (4, 2, 3, 3, 3))
  eps = jax.random.normal(k[1], x0.shape)
  ls = jnp.array([-4.0, -1.0, 1.0, 4.0])
  a, s = schedule.alpha_sigma(ls)
  z = a[:, None, None, None, None] * x0 + s[:, None, None, None, None] * eps
  pred = objectives.x0_eps_to_pred(x0, eps, ls, objective)
  x0_hat, eps_hat = objectives.pred_to_x0_eps(pred, z, ls, objective)
  np.testing.assert_allclose(x0_hat, x0, atol=1e-4)
  np.testing.assert_allclose(eps_hat, eps, atol=1e-4)
  np.testing.assert_allclose(objectives.eps_from_x0(z, x0, ls), eps, atol=1e-4)


@pytest.mark.parametrize("weighting", ["snr+1", "snr", "truncated_snr", "min_snr"])
@pytest.mark.parametrize("objective", objectives.OBJECTIVES)
def test_weightings_mean_the_same_in_every_objective(objective, weighting):
  """factor * ||pred - target||^2 == lambda(SNR) * ||x0_hat - x0||^2."""
  k = jax.random.split(jax.random.key(1), 3)
  x0, eps = jax.random.normal(k[0], (3, 8)), jax.random.normal(k[1], (3, 8))
  ls = jnp.array([-3.0, 0.5, 3.0])
  a, s = schedule.alpha_sigma(ls)
  z = a[:, None] * x0 + s[:, None] * eps
  pred = objectives.target(x0, eps, ls, objective) + 0.1 * jax.random.normal(k[2], x0.shape)
  x0_hat, _ = objectives.pred_to_x0_eps(pred, z, ls, objective)
  snr = jnp.exp(ls)
  lam = {"snr+1": snr + 1, "snr": snr, "truncated_snr": jnp.maximum(snr, 1.0),
         "min_snr": jnp.minimum(snr, 5.0)}[weighting]
  w = objectives.loss_weight(ls, objective, weighting, 5.0)
  lhs = w * jnp.sum(jnp.square(pred - objectives.target(x0, eps, ls, objective)), -1)
  np.testing.assert_allclose(lhs, lam * jnp.sum(jnp.square(x0_hat - x0), -1), rtol=1e-3)
  if objective == "v" and weighting == "snr+1":
    np.testing.assert_allclose(w, 1.0, rtol=1e-6)


def test_diffusion_loss_exact_model_and_frame_mask():
  cfg = objectives.default_diffusion_config()
  point = jnp.full((2, 3, 4, 4, 3), 0.5)

  def exact(z, ls):  # data = a single point: the exact v-prediction
    a, s = schedule.alpha_sigma(ls)
    eps = (z - a[:, None, None, None, None] * point) / s[:, None, None, None, None]
    return objectives.x0_eps_to_pred(point, eps, ls, "v")

  loss, aux = objectives.diffusion_loss(exact, point, jax.random.key(0), cfg)
  assert float(loss) < 1e-6 and aux["loss_per_sample"].shape == (2,)
  assert float(jnp.abs(aux["t"][1] - aux["t"][0])) == pytest.approx(0.5, abs=1e-6)  # stratified t

  frame_mask = jnp.array([[True, True, False], [True, True, True]])
  def wrong_on_last_frame(z, ls):
    return exact(z, ls).at[:, 2].add(10.0)
  masked, aux = objectives.diffusion_loss(wrong_on_last_frame, point, jax.random.key(0), cfg,
                                          frame_mask=frame_mask)
  assert float(aux["loss_per_sample"][0]) < 1e-6 and float(aux["loss_per_sample"][1]) > 1.0


def test_offset_noise_is_a_per_video_per_channel_constant_and_off_by_default():
  """diffusion.offset_noise: the training noise's mean over a video's frames and pixels, per
  channel, spreads with the offset's std (independent: an iid sample's mean has std
  1/sqrt(T*H*W)); without the field the noise is the same draw as before."""
  x0 = jnp.zeros((64, 2, 8, 8, 3))  # z = sigma * eps: read the noise from what the model sees
  seen = {}

  def model(z, ls):
    seen["eps"] = z / schedule.alpha_sigma(ls)[1][:, None, None, None, None]
    return jnp.zeros_like(z)
  cfg = objectives.default_diffusion_config()
  means = {}
  for offset in (None, 0.0, 0.5):
    if offset is not None:
      cfg.offset_noise = offset
    objectives.diffusion_loss(model, x0, jax.random.key(0), cfg)
    means[offset] = np.asarray(seen["eps"]).mean(axis=(1, 2, 3))  # [videos, channels]
  np.testing.assert_array_equal(means[None], means[0.0])
  assert np.std(means[0.0]) < 2.5 / np.sqrt(2 * 8 * 8)
  assert 0.4 < np.std(means[0.5]) < 0.6, np.std(means[0.5])


def test_cfg_combine_and_oscillating_schedule():
  c, u = jnp.full((2, 3), 2.0), jnp.full((2, 3), 1.0)
  np.testing.assert_allclose(guidance.cfg_combine(c, u, 1.0), c)
  np.testing.assert_allclose(guidance.cfg_combine(c, u, jnp.array([0.0, 3.0]))[:, 0], [1.0, 4.0])
  w = guidance.oscillating_guidance_weights(8, 15, 1, constant_fraction=0.25, oscillate_until=0.75,
                                            final=5)
  np.testing.assert_array_equal(w, [15, 15, 15, 1, 15, 1, 5, 5])


def test_condition_dropout_rate():
  drop = guidance.condition_dropout(jax.random.key(0), 10000, 0.1)
  assert drop.dtype == jnp.bool_ and 0.08 < float(drop.mean()) < 0.12


def test_row_percentile_selects_exact_ranks_without_sorting():
  rng = np.random.default_rng(0)
  kth = jax.jit(guidance._kth_smallest)
  perc = jax.jit(guidance.row_percentile)
  for n in (1, 2, 7, 100, 4096):
    x = np.abs(rng.standard_normal((3, n))).astype(np.float32) * np.float32([[1e-3], [1.0], [1e3]])
    x[1] = np.round(x[1] * 2) / 2  # ties
    x[2, : n // 2] = 0.0
    if n > 2:
      x[0, 1] = np.inf
    # the bisection finds each rank's value exactly (NumPy's sort as the reference)
    ranks = rng.integers(0, n, size=3).astype(np.int32)
    got = np.asarray(kth(jnp.asarray(x.view(np.int32)), jnp.asarray(ranks))).view(np.float32)
    np.testing.assert_array_equal(got, np.sort(x, axis=1)[np.arange(3), ranks])
    for p in (0.0, 37.3, 50.0, 99.5, 100.0):
      with np.errstate(invalid="ignore"):  # NumPy's interpolation makes inf - inf a NaN
        want = np.percentile(x.astype(np.float64), p, axis=1)
      out = np.asarray(perc(jnp.asarray(x), p))
      finite = np.isfinite(want)
      np.testing.assert_allclose(out[finite], want[finite], rtol=2e-5)
      np.testing.assert_allclose(out, np.asarray(jnp.percentile(jnp.asarray(x), p, axis=1)), rtol=1e-6)
  nan_row = np.ones((2, 5), np.float32)
  nan_row[1, 2] = np.nan
  out = np.asarray(guidance.row_percentile(jnp.asarray(nan_row), 99.5))
  assert out[0] == 1.0 and np.isnan(out[1])


def test_dynamic_thresholding():
  small = jnp.linspace(-0.9, 0.9, 1000).reshape(1, 10, 10, 10)
  np.testing.assert_allclose(guidance.dynamic_threshold(small), small)  # s = 1: untouched
  big = jnp.linspace(-4.0, 4.0, 1000).reshape(1, 10, 10, 10)
  both = jnp.concatenate([small, big])
  out = guidance.dynamic_threshold(both, 99.5)
  np.testing.assert_allclose(out[0], small[0])  # per-sample threshold
  s = np.percentile(np.abs(np.asarray(big)), 99.5)
  np.testing.assert_allclose(out[1], np.clip(big[0], -s, s) / s, rtol=1e-5)
  assert float(jnp.abs(out[1]).max()) == pytest.approx(1.0)
  assert float(jnp.abs(out[1]).mean()) > float(jnp.abs(jnp.clip(big, -1, 1) / 4).mean())  # not a plain rescale
  np.testing.assert_allclose(guidance.static_threshold(big), jnp.clip(big, -1, 1))
