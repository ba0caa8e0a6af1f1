"""GroupNorm per frame: torch's group_norm on each frame, and exact where the mean dwarfs the spread."""
import jax
import jax.numpy as jnp
import numpy as np
import torch

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
