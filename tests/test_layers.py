"""GroupNorm per frame (torch's group_norm on each frame; exact where the mean dwarfs the spread)
and Conv2D's CPU channel padding (the unpadded convolution's values and gradients)."""
import jax
import jax.numpy as jnp
import numpy as np
import torch

from flax import nnx

from imagen_video.nn import layers
from imagen_video.nn.layers import GroupNorm


def _norm(channels, groups, rng):
  gn = GroupNorm(channels, groups, eps=1e-5)
  gn.scale[...] = jnp.asarray(rng.normal(size=channels), jnp.float32)
  gn.bias[...] = jnp.asarray(rng.normal(size=channels), jnp.float32)
  return gn


def _torch(gn, x):
  """torch.nn.functional.group_norm on every frame ([B*T, C, H, W]) and d sum(tanh(y)) / dx."""
  b, t, h, w, c = x.shape
  xt = torch.tensor(np.asarray(x).reshape(b * t, h, w, c)).permute(0, 3, 1, 2).requires_grad_()
  y = torch.nn.functional.group_norm(xt, gn.groups, torch.tensor(np.asarray(gn.scale[...])),
                                     torch.tensor(np.asarray(gn.bias[...])), eps=gn.eps)
  torch.tanh(y).sum().backward()
  back = lambda a: a.detach().permute(0, 2, 3, 1).numpy().reshape(x.shape)
  return back(y), back(xt.grad)


def test_group_norm_matches_torch_per_frame():
  rng = np.random.default_rng(0)
  gn = _norm(12, 4, rng)
  x = jnp.asarray(rng.normal(size=(2, 3, 5, 6, 12)) * 2 + 0.7, jnp.float32)
  y, grad = gn(x), jax.grad(lambda v: jnp.tanh(gn(v)).sum())(x)
  ref_y, ref_grad = _torch(gn, x)
  np.testing.assert_allclose(np.asarray(y), ref_y, atol=2e-5)
  np.testing.assert_allclose(np.asarray(grad), ref_grad, atol=2e-5)


def test_group_norm_exact_where_mean_dwarfs_spread():
  """Mean 300, spread 0.05: E[x^2] - E[x]^2 in fp32 would lose every digit of the variance."""
  rng = np.random.default_rng(1)
  gn = _norm(8, 2, rng)
  x = jnp.asarray(300 + 0.05 * rng.normal(size=(1, 2, 6, 6, 8)), jnp.float32)
  xd = np.asarray(x, np.float64).reshape(1, 2, 6, 6, 2, 4)  # the same fp32 values, in float64
  mean = xd.mean((2, 3, 5), keepdims=True)
  var = xd.var((2, 3, 5), keepdims=True)
  ref = ((xd - mean) / np.sqrt(var + gn.eps)).reshape(x.shape)
  ref = ref * np.asarray(gn.scale[...]) + np.asarray(gn.bias[...])
  np.testing.assert_allclose(np.asarray(gn(x)), ref, atol=2e-3)


def test_cpu_channel_padding_rounds_up_to_the_multiple_except_rgb_sizes():
  assert [layers.cpu_channel_padding(c) for c in (3, 16, 24, 56, 64, 112, 168)] == [0, 0, 8, 8, 0, 0, 8]


def test_conv_with_padded_channels_equals_the_unpadded_convolution():
  rng = np.random.default_rng(2)
  conv = layers.Conv2D(24, 40, 3, rngs=nnx.Rngs(0))
  conv.bias[...] = jnp.asarray(rng.normal(size=40), jnp.float32)
  x = jnp.asarray(rng.normal(size=(2, 3, 8, 8, 24)), jnp.float32)

  def plain(k, b, x):  # the convolution as written, no padding
    y = jax.lax.conv_general_dilated(x.reshape(6, 8, 8, 24), k, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return (y + b).reshape(2, 3, 8, 8, 40)

  hlo = jax.jit(lambda x: conv(x)).lower(x).as_text()
  assert "3x3x32x48" in hlo, "the CPU channel padding is not applied"
  k, b = conv.kernel[...], conv.bias[...]
  np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(plain(k, b, x)), atol=1e-5)
  g = jnp.asarray(rng.normal(size=(2, 3, 8, 8, 40)), jnp.float32)
  grads = nnx.grad(lambda m, x: jnp.sum(m(x) * g), argnums=(0, 1))(conv, x)
  want = jax.grad(lambda k, b, x: jnp.sum(plain(k, b, x) * g), argnums=(0, 1, 2))(k, b, x)
  for got, ref in zip((grads[0]["kernel"][...], grads[0]["bias"][...], grads[1]), want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-4)
