"""The pose guider: zero-initialised (a model gains pose input without changing), trainable,
droppable for pose guidance; its inputs are checked."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_unet import B, S, T, forward_fn, inputs, make, tiny_config

from imagen_video.nn import init_unet


def _pose(seed):
  return jax.random.uniform(jax.random.key(seed), (B, T, S, S, 3))


def test_fresh_guider_leaves_the_output_unchanged_and_learns_the_pose():
  cfg = tiny_config(pose_channels=3, pose_guider_channels=(8,))
  graphdef, state = init_unet(cfg, jax.random.key(0))
  _, random_state = make(cfg)  # a trained-looking network: random weights everywhere
  state = jax.tree.map(lambda a, b: b, state, random_state)
  params = nnx.to_pure_dict(state)
  params["pose_guider"]["out"]["kernel"] = jnp.zeros_like(params["pose_guider"]["out"]["kernel"])
  nnx.replace_by_pure_dict(state, params)  # the guider's last conv as initialised: zero
  f = forward_fn(graphdef)
  x, log_snr, text, mask = inputs()
  a = f(state, x, log_snr, text, mask, {"pose_maps": _pose(1)})
  b = f(state, x, log_snr, text, mask, {"pose_maps": _pose(2)})
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  def loss(s):
    return jnp.mean(f(s, x, log_snr, text, mask, {"pose_maps": _pose(1)}) ** 2)
  grad = nnx.to_pure_dict(jax.grad(loss)(state))["pose_guider"]["out"]["kernel"]
  assert float(jnp.abs(grad).max()) > 0  # training reaches the zero-initialised conv

  params["pose_guider"]["out"]["kernel"] = 0.1 * jnp.ones_like(params["pose_guider"]["out"]["kernel"])
  nnx.replace_by_pure_dict(state, params)
  a = f(state, x, log_snr, text, mask, {"pose_maps": _pose(1)})
  b = f(state, x, log_snr, text, mask, {"pose_maps": _pose(2)})
  assert float(jnp.abs(a - b).max()) > 1e-3  # the pose now matters
  drop = jnp.ones((B,), bool)
  a = f(state, x, log_snr, text, mask, {"pose_maps": _pose(1), "drop_pose": drop})
  b = f(state, x, log_snr, text, mask, {"pose_maps": _pose(2), "drop_pose": drop})
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)  # dropped: pose-free


def test_pose_inputs_are_checked():
  x, log_snr, text, mask = inputs()
  graphdef, state = make(tiny_config(pose_channels=3, pose_guider_channels=(8,)))
  with pytest.raises(ValueError, match="pose_channels > 0: pass pose_maps"):
    forward_fn(graphdef)(state, x, log_snr, text, mask, {})
  graphdef, state = make(tiny_config())
  with pytest.raises(ValueError, match="pose_maps given but config.model.pose_channels == 0"):
    forward_fn(graphdef)(state, x, log_snr, text, mask, {"pose_maps": _pose(1)})
