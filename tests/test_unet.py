"""Video U-Net: shapes, frame-mask semantics, null text, SR conditioning, remat, sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imagen_video.nn import abstract_unet, default_config, init_unet
from imagen_video.nn.masks import temporal_allowed
from imagen_video.parallel import sharding

B, T, S, L, D = 2, 8, 16, 5, 12


def tiny_config(**kw):
  c = default_config()
  c.update(channels=16, channel_mults=(1, 2), num_res_blocks=(1, 2), resolution=S,
           attn_resolutions=(8,), cross_attn_resolutions=(8,), heads=2, head_dim=8, text_dim=D,
           norm_groups=4)
  c.update(**kw)
  return c


def make(cfg, seed=1):
  """Random params of the right structure (a fresh net is trivial: zero-init outputs).

  One flat normal draw for all params: XLA:CPU compiles each random op slowly,
  so per-param initialisation would dominate test time. `init_unet` (the real
  initialiser) is exercised by the sharding test.
  """
  graphdef, abstract = abstract_unet(cfg)
  leaves, tree = jax.tree.flatten(abstract)
  sizes = [int(np.prod(l.shape)) for l in leaves]
  flat = np.asarray(jax.random.normal(jax.random.key(seed), (sum(sizes),)))
  vals, off = [], 0
  for leaf, n in zip(leaves, sizes):
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    vals.append(jnp.asarray(flat[off:off + n].reshape(leaf.shape) / np.sqrt(fan_in), leaf.dtype))
    off += n
  return graphdef, jax.tree.unflatten(tree, vals)


def forward_fn(graphdef):
  @jax.jit
  def f(state, x, log_snr, text, text_mask, kw):
    return nnx.merge(graphdef, state)(x, log_snr, text, text_mask, **kw)
  return f


def inputs(seed=0):
  k = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(k[0], (B, T, S, S, 3))
  text = jax.random.normal(k[1], (B, L, D))
  mask = jnp.arange(L)[None] < jnp.array([[3], [5]])
  return x, jnp.array([-3.0, 2.0]), text, mask


@pytest.fixture(scope="module")
def attn_net():
  graphdef, state = make(tiny_config(temporal_mixing="attention"))
  return graphdef, state, forward_fn(graphdef)


@pytest.fixture(scope="module")
def conv_net():
  cfg = tiny_config(temporal_mixing="conv", cond_channels=3, use_aug_level_embedding=True)
  graphdef, state = make(cfg)
  return graphdef, state, forward_fn(graphdef)


def test_shapes_and_logical_axes(attn_net):
  graphdef, state, f = attn_net
  x, ls, text, mask = inputs()
  y = f(state, x, ls, text, mask, {})
  assert y.shape == x.shape and y.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(y))) and float(jnp.std(y)) > 0
  for path, var in nnx.to_flat_state(state):
    axes = var.get_metadata().get("logical_axes")
    assert axes is not None and len(axes) == var.get_value().ndim, (path, axes)


def test_temporal_allowed_semantics():
  allowed = temporal_allowed(2, 3, frame_mask=jnp.array([[1, 1, 0], [1, 1, 1]], bool),
                             is_image=jnp.array([False, True]))
  np.testing.assert_array_equal(allowed[0], [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
  np.testing.assert_array_equal(allowed[1], np.eye(3))


@pytest.fixture(scope="module")
def conv3d_net():
  graphdef, state = make(tiny_config(temporal_mixing="conv+attention", temporal_conv_spatial=3))
  return graphdef, state, forward_fn(graphdef)


@pytest.mark.parametrize("net", ["attn_net", "conv_net", "conv3d_net"])
def test_image_and_padding_frames_do_not_mix(net, request):
  graphdef, state, f = request.getfixturevalue(net)
  x, ls, text, mask = inputs()
  kw = {"is_image": jnp.array([True, False]), "frame_mask": jnp.arange(T)[None] < jnp.array([[T], [5]])}
  if net == "conv_net":
    kw.update(cond_video=jnp.zeros_like(x), aug_level=jnp.array([0.1, 0.3]))
  y = f(state, x, ls, text, mask, kw)
  # Sample 0 is a stack of images: changing its frames 1.. leaves frame 0 untouched.
  # Sample 1 is a 5-frame video + 3 padding frames: changing the padding leaves frames 0..4.
  x2 = x.at[0, 1:].set(-x[0, 1:] + 3.0).at[1, 5:].set(7.0)
  y2 = f(state, x2, ls, text, mask, kw)
  np.testing.assert_allclose(y2[0, 0], y[0, 0], atol=1e-5)
  np.testing.assert_allclose(y2[1, :5], y[1, :5], atol=1e-5)
  # ... while real video frames do mix in time.
  x3 = x.at[1, 1].set(5.0)
  y3 = f(state, x3, ls, text, mask, kw)
  assert float(jnp.abs(y3[1, 0] - y[1, 0]).max()) > 1e-3


def test_drop_text_uses_learned_null_embedding(attn_net):
  graphdef, state, f = attn_net
  x, ls, text, mask = inputs()
  drop = {"drop_text": jnp.array([True, False])}
  y = f(state, x, ls, text, mask, drop)
  y_other_text = f(state, x, ls, jax.random.normal(jax.random.key(9), text.shape), mask, drop)
  np.testing.assert_allclose(y[0], y_other_text[0], atol=1e-5)  # text ignored when dropped
  assert float(jnp.abs(y[1] - y_other_text[1]).max()) > 1e-3
  null = nnx.merge(graphdef, state).null_text[...]
  manual_text = text.at[0].set(jnp.broadcast_to(null, (L, D)))
  manual_mask = mask.at[0].set(jnp.arange(L) == 0)
  np.testing.assert_allclose(f(state, x, ls, manual_text, manual_mask, {})[0], y[0], atol=1e-5)
  y_cond = f(state, x, ls, text, mask, {})
  assert float(jnp.abs(y_cond[0] - y[0]).max()) > 1e-3


def test_sr_conditioning_and_aug_level(conv_net):
  graphdef, state, f = conv_net
  x, ls, text, mask = inputs()
  kw = {"cond_video": x * 0.5, "aug_level": jnp.array([0.1, 0.3])}
  y = f(state, x, ls, text, mask, kw)
  assert y.shape == x.shape
  y_aug = f(state, x, ls, text, mask, {**kw, "aug_level": jnp.array([0.6, 0.3])})
  assert float(jnp.abs(y_aug[0] - y[0]).max()) > 1e-4
  np.testing.assert_allclose(y_aug[1], y[1], atol=1e-5)
  y_cond = f(state, x, ls, text, mask, {**kw, "cond_video": x})
  assert float(jnp.abs(y_cond - y).max()) > 1e-4
  with pytest.raises(ValueError, match="cond_video"):
    nnx.merge(graphdef, state)(x, ls, text, mask, aug_level=kw["aug_level"])


def test_remat_bf16_and_dropout_gradients():
  cfg = tiny_config(remat="block", dtype="bfloat16", dropout=0.1, temporal_mixing="conv",
                    channel_mults=(1,), num_res_blocks=(1,), attn_resolutions=(16,))
  graphdef, state = make(cfg)
  x, ls, text, mask = inputs()

  @jax.jit
  def loss_and_grad(state, key):
    def loss(s):
      y = nnx.merge(graphdef, s)(x[:, :2], ls, text, mask, deterministic=False, dropout_rng=key)
      return jnp.mean(jnp.square(y))
    return jax.value_and_grad(loss)(state)

  l1, g = loss_and_grad(state, jax.random.key(0))
  l2, _ = loss_and_grad(state, jax.random.key(1))
  assert jnp.isfinite(l1) and float(l1) != float(l2)  # dropout active, keys matter
  norms = [float(jnp.abs(v).sum()) for v in jax.tree.leaves(g)]
  assert all(np.isfinite(norms)) and sum(norms) > 0


def test_remat_changes_no_value_and_runs_inside_a_sampling_loop():
  """Remat gives the forward and gradient of no remat, also with the network merged inside a
  loop body, where the samplers build it (nnx.remat failed there)."""
  x, ls, text, mask = inputs()
  x = x[:, :2]
  results = {}
  for remat in ("none", "block"):  # dots differs from block only in the policy it passes
    graphdef, state = make(tiny_config(remat=remat, channel_mults=(1,), num_res_blocks=(1,),
                                       attn_resolutions=(16,), cross_attn_resolutions=(16,)))

    @jax.jit
    def run(state, x):
      net = lambda s, z: nnx.merge(graphdef, s)(z, ls, text, mask)[..., :3]
      looped = jax.lax.fori_loop(0, 2, lambda i, z: 0.5 * net(state, z), x)
      return looped, jax.grad(lambda s: jnp.mean(jnp.square(net(s, x))))(state)
    results[remat] = run(state, x)
  for a, b in zip(jax.tree.leaves(results["block"]), jax.tree.leaves(results["none"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_sharded_forward_matches_unsharded():
  cfg = tiny_config(temporal_mixing="attention", channel_mults=(1,), num_res_blocks=(1,),
                    attn_resolutions=(S,), cross_attn_resolutions=(S,))
  graphdef, state = make(cfg)
  b, t = 8, 2
  k = jax.random.split(jax.random.key(3), 2)
  x = jax.random.normal(k[0], (b, t, S, S, 3))
  text = jax.random.normal(k[1], (b, L, D))
  mask = jnp.ones((b, L), bool)
  ls = jnp.linspace(-5, 5, b)

  def fwd(state, x, ls, text, mask):
    return nnx.merge(graphdef, state)(x, ls, text, mask)

  ref = jax.jit(fwd)(state, x, ls, text, mask)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
  rules = (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
           ("text_embed", "fsdp"))
  shardings = sharding.state_shardings(state, mesh, rules)
  # The trainer's path: params created already sharded inside one jit ...
  _, fresh = init_unet(cfg, jax.random.key(0), out_shardings=shardings)
  assert jax.tree.structure(fresh) == jax.tree.structure(state)
  # ... here overwritten by the random test params (a fresh net's output is zero).
  sharded_state = jax.device_put(state, shardings)
  assert any(len(v.get_value().sharding.device_set) == 8 and not v.get_value().sharding.is_fully_replicated
             for _, v in nnx.to_flat_state(sharded_state))
  batch_sh = jax.NamedSharding(mesh, sharding.spec_for(("batch",), rules, mesh))
  with sharding.activation_rules(mesh, rules):
    out = jax.jit(fwd)(sharded_state, *jax.device_put((x, ls, text, mask), batch_sh))
  assert not out.sharding.is_fully_replicated
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=2e-4, rtol=2e-4)


def _zero_rel_pos(state):
  """The relative position bias as initialised (zeros): time-symmetric."""
  return jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.zeros_like(v) if "rel_pos" in jax.tree_util.keystr(p) else v, state)


@pytest.mark.parametrize("frame_pos", [False, True])
def test_frame_position_embedding_breaks_time_reversal_symmetry(frame_pos):
  # Without frame positions a fresh temporal-attention net maps a time-reversed clip to
  # the time-reversed output, so text cannot pick "left" over "right" early in training.
  graphdef, state = make(tiny_config(temporal_mixing="attention", frame_position_embedding=frame_pos))
  state = _zero_rel_pos(state)
  f = forward_fn(graphdef)
  x, log_snr, text, mask = inputs()
  out = f(state, x, log_snr, text, mask, {})
  out_rev = f(state, x[:, ::-1], log_snr, text, mask, {})[:, ::-1]
  gap = float(jnp.max(jnp.abs(out - out_rev))) / float(jnp.max(jnp.abs(out)))
  if frame_pos:
    assert gap > 1e-2
  else:
    assert gap < 1e-5


def test_frame_index_embedding_tells_each_video_frame_its_index_but_not_images():
  # Identical frames and no temporal mixing: outputs differ across frames only through
  # the frame index; a stack of independent images stays frame-independent.
  graphdef, state = make(tiny_config(temporal_mixing="none", frame_index_embedding=True))
  f = forward_fn(graphdef)
  x, log_snr, text, mask = inputs()
  x = jnp.broadcast_to(x[:, :1], x.shape)
  out = f(state, x, log_snr, text, mask, {"is_image": jnp.array([False, True])})
  spread = jnp.max(jnp.abs(out - out[:, :1]), axis=(1, 2, 3, 4)) / jnp.max(jnp.abs(out))
  assert float(spread[0]) > 1e-2  # video: frame-dependent
  assert float(spread[1]) < 1e-5  # images: no frame index


def test_space_time_conv_matches_a_direct_3d_convolution():
  from imagen_video.nn.blocks import TemporalConv
  layer = TemporalConv(4, 3, groups=2, spatial=3, dtype=jnp.float32, param_dtype=jnp.float32,
                       rngs=nnx.Rngs(0))
  w = np.asarray(jax.random.normal(jax.random.key(1), layer.kernel.shape))
  layer.kernel.value = jnp.asarray(w)
  x = jax.random.normal(jax.random.key(2), (1, 5, 6, 7, 4))
  allowed = temporal_allowed(1, 5)
  y = np.asarray(layer(x, allowed))
  h = np.pad(np.asarray(jax.nn.silu(layer.norm(x)))[0], ((1, 1), (1, 1), (1, 1), (0, 0)))
  ref = np.asarray(x[0]).copy()
  for dt in range(3):  # out[t, i, j] = sum over taps of h[t+dt-1, i+di-1, j+dj-1] @ w[dt, di, dj]
    for di in range(3):
      for dj in range(3):
        ref += np.einsum("thwc,cd->thwd", h[dt:dt + 5, di:di + 6, dj:dj + 7], w[dt, di, dj])
  np.testing.assert_allclose(y[0], ref, rtol=1e-4, atol=1e-4)
