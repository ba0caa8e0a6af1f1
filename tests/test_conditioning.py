"""SR conditioning: downsample inverts upsample's sampling; back-projection enforces the input;
blur augmentation is a per-example Gaussian."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from imagen_video.stage import conditioning


def _config(temporal, rounds):
  return ml_collections.ConfigDict(dict(stage=dict(temporal_upsample=temporal, back_projection=rounds)))


@pytest.mark.parametrize("temporal", ["linear", "repeat"])
def test_downsample_undoes_upsample(temporal):
  low = jax.random.uniform(jax.random.key(0), (2, 4, 8, 8, 3), minval=-1, maxval=1)
  up = conditioning.upsample(low, (2, 8, 8, 8, 3), temporal)  # temporal only: exact
  np.testing.assert_allclose(conditioning.downsample(up, (4, 8, 8)), low, atol=1e-6)


def test_back_projection_makes_the_output_agree_with_its_input():
  k = jax.random.split(jax.random.key(1), 2)
  low = jax.random.uniform(k[0], (1, 4, 8, 8, 3), minval=-1, maxval=1)
  out = jax.random.uniform(k[1], (1, 8, 16, 16, 3), minval=-1, maxval=1)  # a poor sample
  gaps = []
  for rounds in (0, 1, 3):
    fixed = conditioning.back_project(_config("linear", rounds), out, low)
    gaps.append(float(jnp.abs(conditioning.downsample(fixed, (4, 8, 8)) - low).max()))
  # bilinear up then area down is not the identity: the gap shrinks geometrically
  assert gaps[0] > 1.0 and gaps[1] < 0.6 * gaps[0] and gaps[2] < 0.4 * gaps[1]
  tsr = conditioning.back_project(_config("linear", 1), out[:, :, :8, :8], low)  # time only
  np.testing.assert_allclose(tsr[:, ::2], low, atol=1e-6)  # source frames restored exactly


def test_downsample_rejects_non_integer_factors():
  with pytest.raises(ValueError, match="not integer factors"):
    conditioning.downsample(jnp.zeros((1, 8, 16, 16, 3)), (3, 8, 8))


def test_augmentation_level_ignores_the_stages_schedule_shift():
  from imagen_video.diffusion import objectives
  video = jnp.zeros((1, 2, 8, 8, 3))
  outs = []
  for shift in (1.0, 8.0):  # residual stages shift their own schedule, not the augmentation
    c = ml_collections.ConfigDict(dict(diffusion=objectives.default_diffusion_config()))
    c.diffusion.resolution_shift = shift
    outs.append(conditioning._augment(c, video, jnp.array([0.1]), jax.random.normal(jax.random.key(0), video.shape)))
  np.testing.assert_allclose(outs[0], outs[1])
  assert 0.1 < float(jnp.std(outs[0])) < 0.25  # cosine t=0.1: sigma = 0.156


def test_residual_stages_diffuse_the_scaled_residual_and_invert_it():
  c = ml_collections.ConfigDict(dict(stage=dict(kind="tsr", residual=True, residual_scale=8.0)))
  k = jax.random.split(jax.random.key(2), 2)
  video = jax.random.uniform(k[0], (1, 4, 8, 8, 3), minval=-1, maxval=1)
  up = jax.random.uniform(k[1], video.shape, minval=-1, maxval=1)
  diffused = conditioning.to_diffused(c, video, up)
  np.testing.assert_allclose(diffused, 8.0 * (video - up), rtol=1e-6)
  np.testing.assert_allclose(conditioning.from_diffused(c, diffused, up), video, atol=1e-6)
  c.stage.residual = False  # plain SR (and the base) diffuse the video itself
  assert conditioning.to_diffused(c, video, up) is video
  assert conditioning.from_diffused(c, video, up) is video


def test_blur_augment_is_a_gaussian_per_example():
  from scipy import ndimage
  config = ml_collections.ConfigDict(dict(stage=dict(kind="ssr", blur_max=1.0)))
  low = jax.random.normal(jax.random.key(0), (4, 2, 12, 10, 3))
  out = np.asarray(conditioning.blur_augment(config, low, jax.random.key(1)))
  sigma = np.asarray(jax.random.uniform(jax.random.key(1), (4,), maxval=1.0))
  for b in range(4):  # scipy with the same 3 px radius, edges repeated
    ref = ndimage.gaussian_filter(np.asarray(low[b]), sigma=(0, sigma[b], sigma[b], 0), mode="nearest",
                                  truncate=3 / sigma[b])
    np.testing.assert_allclose(out[b], ref, atol=1e-5)
  assert len(set(np.round(out.std((1, 2, 3, 4)), 4))) == 4  # each example its own blur
  config.stage.blur_max = 0.0
  assert conditioning.blur_augment(config, low, jax.random.key(1)) is low
