"""Known frames/pixels: replacement vs reconstruction guidance against the exact conditional
of correlated Gaussian data; Known resizing; autoregressive extension."""
import jax.numpy as jnp
import numpy as np
import pytest

from sampler_call import run_sampler  # noqa: E402 (tests/ is on sys.path)
from imagen_video.diffusion import objectives, schedule
from imagen_video.stage import known as known_lib

RHO, X_B = 0.95, 1.5  # two "frames" with correlation RHO; frame 1 known to be X_B


def correlated_model(state, z, log_snr, cond):
  """Exact v-prediction for x ~ N(0, [[1, rho], [rho, 1]]) over the frame axis of [N, 2, 1, 1, 1]:
  E[x | z] = alpha S (alpha^2 S + sigma^2 I)^-1 z."""
  del state, cond
  a, s = schedule.alpha_sigma(log_snr)
  cov = jnp.array([[1.0, RHO], [RHO, 1.0]])
  inv = jnp.linalg.inv(a[:, None, None] ** 2 * cov + s[:, None, None] ** 2 * jnp.eye(2))
  gain = a[:, None, None] * cov @ inv  # [N, 2, 2]
  x0 = jnp.einsum("nij,nj->ni", gain, z[:, :, 0, 0, 0])[:, :, None, None, None]
  a5, s5 = a[:, None, None, None, None], s[:, None, None, None, None]
  return objectives.x0_eps_to_pred(x0, (z - a5 * x0) / s5, log_snr, "v")


def _sample(conditioning, recon_weight=1.0, steps=64):
  shape = (4096, 2, 1, 1, 1)
  known = {"x": jnp.zeros(shape).at[:, 1].set(X_B), "mask": jnp.zeros(shape).at[:, 1].set(1.0)}
  return run_sampler(correlated_model, {}, {}, 0, shape=shape, steps=steps,
                         sampler="ddim", guided=False, thresholding="none", known=known,
                         conditioning=conditioning, recon_weight=recon_weight)


def test_known_values_are_kept_and_reconstruction_guidance_finds_the_conditional_mean():
  """Measured: replacement mean 0.80; reconstruction w_r 1 / 2 / 4 / 8: 1.02 / 1.19 / 1.41 / 1.60
  against the exact 1.425 (std 0.21 at w_r 4 against 0.31): w_r = 1, the approximation
  q(x_b | z_t) = N(x0_hat_b, sigma^2 / alpha^2), under-conditions, as VDM found."""
  want_mean, want_std = RHO * X_B, np.sqrt(1 - RHO ** 2)  # x_a | x_b, exactly
  rep, rec = _sample("replacement"), _sample("reconstruction", recon_weight=4.0)
  for out in (rep, rec):
    np.testing.assert_allclose(np.asarray(out[:, 1]), X_B)  # the known frame, pasted
  err_rep = abs(float(rep[:, 0].mean()) - want_mean)
  err_rec = abs(float(rec[:, 0].mean()) - want_mean)
  assert err_rec < 0.05, (err_rec, float(rec[:, 0].mean()), want_mean)
  assert err_rec < err_rep / 2, (err_rec, err_rep)  # replacement under-conditions (VDM 3.1)
  assert 0.5 * want_std < float(rec[:, 0].std()) < float(rep[:, 0].std())


def test_conditioning_name_is_checked():
  with pytest.raises(ValueError, match="conditioning must be one of"):
    _sample("inpaint")


def test_known_to_shape_strides_frames_and_keeps_only_fully_known_pixels():
  video = np.random.default_rng(0).uniform(-1, 1, (1, 16, 8, 8, 3)).astype(np.float32)
  region = np.zeros((1, 1, 8, 8))
  region[..., 3:8, 3:8] = 1  # to generate: the lower-right corner, not 2x2-aligned
  k = known_lib.inpainting(video, region).to_shape((2, 8, 4, 4, 3))
  assert k.video.shape == (2, 8, 4, 4, 3) and k.mask.shape == (2, 8, 4, 4, 1)
  np.testing.assert_allclose(k.video[0, 1], video[0, 2].reshape(4, 2, 4, 2, 3).mean((1, 3)), atol=1e-6)
  # a low-res pixel is known only if all four of its pixels are: rows/cols 0 of 4 only
  want = np.ones((4, 4))
  want[1:, 1:] = 0
  np.testing.assert_array_equal(k.mask[0, 0, :, :, 0], want)
  with pytest.raises(ValueError, match="cannot map them onto 6"):
    k.to_shape((2, 6, 4, 4, 3))


def test_task_masks_and_their_errors():
  frames = np.zeros((2, 3, 4, 4, 3), np.float32)
  k = known_lib.keyframes(frames, [0, 5, 7], 8)
  assert k.mask[0, :, 0, 0, 0].tolist() == [1, 0, 0, 0, 0, 1, 0, 1]
  assert known_lib.first_frame(frames[:, 0], 8).mask[1, :, 0, 0, 0].tolist() == [1] + [0] * 7
  assert known_lib.prefix(frames, 8).mask[0, :, 3, 3, 0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
  with pytest.raises(ValueError, match=r"keyframe positions \[0, 8, 2\]"):
    known_lib.keyframes(frames, [0, 8, 2], 8)
  with pytest.raises(ValueError, match="3 keyframes but 2 positions"):
    known_lib.keyframes(frames, [0, 1], 8)
  with pytest.raises(ValueError, match="extension needs 1..7 given frames"):
    known_lib.prefix(np.zeros((1, 8, 4, 4, 3)), 8)


def test_default_context_leaves_a_quarter_of_the_window_to_generate():
  assert [known_lib.default_context(w) for w in (2, 4, 8, 16)] == [1, 3, 6, 12]


def test_extend_continues_from_the_last_context_frames():
  calls = []

  def window(known):  # frame values count on from the last known one
    calls.append(known)
    k = int(known.mask[0, :, 0, 0, 0].sum())
    last = known.video[:, k - 1, 0, 0, 0]
    return np.stack([np.where(i < k, known.video[:, i, 0, 0, 0], last + i - k + 1)
                     for i in range(8)], 1)[:, :, None, None, None] * np.ones((1, 1, 2, 2, 3))
  start = np.arange(3, dtype=np.float32)[None, :, None, None, None] * np.ones((1, 1, 2, 2, 3))
  out = known_lib.extend(window, start, 20, window=8, context=4)
  assert out.shape == (1, 20, 2, 2, 3)
  np.testing.assert_array_equal(out[0, :, 0, 0, 0], np.arange(20))
  assert [int(k.mask[0, :, 0, 0, 0].sum()) for k in calls] == [3, 4, 4, 4]


def test_extend_refreshes_each_window_before_keeping_its_new_frames():
  seen = []

  def window(known):  # new frames repeat the last known value, plus 0.5 of "grain"
    k = int(known.mask[0, :, 0, 0, 0].sum())
    return np.where(np.arange(8)[None, :, None, None, None] < k, known.video, known.video[:, k - 1:k] + 0.5)

  def refresh(video, known):  # rounds the grain away; sees the window and its known frames
    seen.append((video.shape, int(known.mask[0, :, 0, 0, 0].sum())))
    return np.floor(video)
  start = np.arange(3, dtype=np.float32)[None, :, None, None, None] * np.ones((1, 1, 2, 2, 3))
  out = known_lib.extend(window, start, 12, window=8, context=4, refresh=refresh)
  np.testing.assert_array_equal(out[0, :, 0, 0, 0], [0, 1, 2] + [2] * 9)  # no grain builds up
  assert seen == [((1, 8, 2, 2, 3), 3), ((1, 8, 2, 2, 3), 4)]


def test_extend_keeps_a_window_whose_refresh_would_erase_it():
  spot = np.zeros((2, 8, 4, 4, 3), np.float32)
  spot[:, :, 1, 1] = 1.0  # a one-pixel object in every frame of both samples

  def window(known):
    return spot

  def refresh(video, known):  # sample 0: the object is taken for noise; sample 1: dimmed a little
    return video * np.array([0.1, 0.8], np.float32)[:, None, None, None, None]
  start = spot[:, :2]
  out = known_lib.extend(window, start, 14, window=8, context=6, refresh=refresh)
  assert out[0, 2:, 1, 1, 0].min() == 1.0  # kept as sampled: the refresh would leave 10%
  np.testing.assert_allclose(out[1, 2:, 1, 1, 0], 0.8)  # refreshed: 80% of its contrast is left
  out = known_lib.extend(window, start, 14, window=8, context=6, refresh=refresh, refresh_floor=0.0)
  np.testing.assert_allclose(out[0, 2:, 1, 1, 0], 0.1)  # floor 0: every refresh is kept
