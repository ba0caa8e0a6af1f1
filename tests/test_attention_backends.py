"""attention_backend='auto' picks cuDNN on GPU, splash on TPU, XLA elsewhere (by the platform
traced for); splash (Pallas' interpreter on CPU) equals XLA's attention, alone, with a
key-padding mask, unaligned lengths, gradients and sharded over 8 devices. Self-attention's
q, k, v come from one matmul that equals three projections, sharded over heads too."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagen_video.nn import attention
from imagen_video.parallel import sharding


def _qkv(n=2, tq=40, s=24, heads=2, d=16, dtype=jnp.float32, seed=0):
  r = np.random.default_rng(seed)
  q = jnp.asarray(r.normal(size=(n, tq, heads, d)), dtype)
  k, v = (jnp.asarray(r.normal(size=(n, s, heads, d)), dtype) for _ in range(2))
  return q, k, v


def test_auto_picks_the_kernel_per_platform_and_call():
  bf16, f32 = _qkv(dtype=jnp.bfloat16)[0], _qkv()[0]
  k = _qkv()[1]
  bias = jnp.zeros((1, 2, 40, 24))
  keys_only = jnp.ones((2, 1, 1, 24), bool)
  assert attention.auto_backend("gpu", bf16, k) == "cudnn"
  assert attention.auto_backend("gpu", bf16, k, bias=bias) == "cudnn"  # even lengths
  assert attention.auto_backend("gpu", f32, k) == "xla"  # cuDNN flash wants bf16/fp16
  odd = _qkv(tq=1, s=1, dtype=jnp.bfloat16)  # a single frame (an image) with T5's bias
  assert attention.auto_backend("gpu", odd[0], odd[1], bias=jnp.zeros((1, 2, 1, 1))) == "xla"
  wide = _qkv(d=160, dtype=jnp.bfloat16)
  assert attention.auto_backend("gpu", wide[0], wide[1]) == "xla"
  assert attention.auto_backend("tpu", f32, k) == "splash"
  assert attention.auto_backend("tpu", f32, k, mask=keys_only) == "splash"
  assert attention.auto_backend("tpu", f32, k, bias=bias) == "xla"
  assert attention.auto_backend("tpu", f32, k, mask=jnp.ones((2, 1, 40, 24), bool)) == "xla"
  assert attention.auto_backend("cpu", bf16, k) == "xla"


def test_auto_follows_the_platform_of_the_mesh_traced_for():
  mesh = sharding.make_mesh({"data": -1})
  assert sharding.target_platform() == "cpu"
  with sharding.activation_rules(mesh, ()):
    assert sharding.target_platform() == mesh.devices.flat[0].platform


def _xla(q, k, v, **kw):
  return attention.attend(q, k, v, backend="xla", **kw)


def test_backends_that_run_on_cpu_agree_with_xla():
  q, k, v = _qkv()  # lengths that are not multiples of splash's 128-blocks: padded
  mask = jnp.asarray(np.random.default_rng(1).random((2, 1, 1, 24)) > 0.3).at[:, :, :, 0].set(True)
  want = _xla(q, k, v)
  np.testing.assert_array_equal(attention.attend(q, k, v, backend="auto"), want)  # CPU: XLA
  np.testing.assert_allclose(attention.attend(q, k, v, backend="splash"), want, atol=2e-5)
  np.testing.assert_allclose(attention.attend(q, k, v, mask=mask, backend="splash"),
                             _xla(q, k, v, mask=mask), atol=2e-5)
  with pytest.raises(ValueError, match="no bias"):
    attention.attend(q, k, v, bias=jnp.zeros((1, 2, 40, 24)), backend="splash")


def test_splash_gradients_match_xla():
  q, k, v = _qkv(n=1, tq=16, s=8, heads=1, d=8)
  loss = lambda backend: lambda q, k, v: jnp.sum(jnp.sin(attention.attend(q, k, v, backend=backend)))
  for got, want in zip(jax.grad(loss("splash"), argnums=(0, 1, 2))(q, k, v),
                       jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(got, want, atol=5e-5)


def test_splash_runs_per_device_under_the_activation_rules():
  mesh = sharding.make_mesh({"data": 4, "tensor": 2})
  rules = (("batch", "data"), ("heads", "tensor"))
  q, k, v = _qkv(n=4)
  fn = jax.jit(lambda q, k, v: attention.attend(q, k, v, backend="splash"))
  with jax.set_mesh(mesh), sharding.activation_rules(mesh, rules):
    assert "shard_map" in str(jax.make_jaxpr(fn)(q, k, v))
    got = fn(q, k, v)
  np.testing.assert_allclose(got, _xla(q, k, v), atol=2e-5)


def test_a_unet_with_auto_on_tpu_computes_what_xla_does(monkeypatch):
  # 'auto' as on a TPU: splash for spatial self-attention and the text cross-attention (key
  # padding), XLA for temporal attention (T5's bias); splash runs in Pallas' interpreter here.
  from test_unet import forward_fn, inputs, make, tiny_config  # noqa: E402 (tests/ is on sys.path)
  picked = []
  real = attention.auto_backend

  def as_on_tpu(platform, *args, **kw):
    picked.append(real("tpu", *args, **kw))
    return picked[-1]
  monkeypatch.setattr(attention, "auto_backend", as_on_tpu)
  outs = {}
  for backend in ("xla", "auto"):
    graphdef, state = make(tiny_config(temporal_mixing="attention", attention_backend=backend))
    outs[backend] = forward_fn(graphdef)(state, *inputs(), {})
  assert set(picked) == {"splash", "xla"}
  np.testing.assert_allclose(outs["auto"], outs["xla"], atol=1e-4)


def test_self_attention_projects_q_k_v_in_one_matmul_as_three_would():
  from flax import nnx
  m = attention.Attention(24, 3, 8, rngs=nnx.Rngs(0))
  for i, p in enumerate((m.q, m.k, m.v, m.out)):  # distinct non-zero biases (they start at zero)
    p.bias[...] = jax.random.normal(jax.random.key(10 + i), p.bias[...].shape)
  x = jax.random.normal(jax.random.key(1), (2, 5, 24))
  q, k, v = m._self_qkv(x)
  for got, dense in zip((q, k, v), (m.q, m.k, m.v)):
    np.testing.assert_allclose(got, dense(x), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(m(x), m.out(_xla(m.q(x), m.k(x), m.v(x))), rtol=1e-6, atol=1e-6)


def test_one_matmul_q_k_v_keeps_heads_sharded_over_the_tensor_axis(monkeypatch):
  # Heads split over 2 devices: the same values as unsharded, and no collective beyond those
  # that three separate projections need (the stacked kernel is not gathered).
  import re
  from flax import nnx
  m = attention.Attention(16, 4, 8, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(m)
  leaves, tree = jax.tree.flatten(state)  # distinct non-zero biases
  state = jax.tree.unflatten(tree, [a + 0.1 * jax.random.normal(jax.random.key(i), a.shape)
                                    for i, a in enumerate(leaves)])
  x = jax.random.normal(jax.random.key(99), (8, 6, 16))
  fwd = lambda state, x: nnx.merge(graphdef, state)(x)
  mesh = sharding.make_mesh({"data": 4, "tensor": 2})
  rules = (("batch", "data"), ("heads", "tensor"))
  sharded = jax.device_put(state, sharding.state_shardings(state, mesh, rules))
  assert "tensor" in str(sharded["q"]["kernel"].get_value().sharding.spec)
  xs = jax.device_put(x, jax.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))

  def collectives():
    with sharding.activation_rules(mesh, rules):
      compiled = jax.jit(fwd).lower(sharded, xs).compile()
    np.testing.assert_allclose(compiled(sharded, xs), jax.jit(fwd)(state, x), rtol=1e-5, atol=1e-5)
    return sorted(re.findall(r"\b(all-gather|all-reduce|all-to-all|collective-permute)\(", compiled.as_text()))
  fused = collectives()
  monkeypatch.setattr(attention.Attention, "_self_qkv", lambda self, x: (self.q(x), self.k(x), self.v(x)))
  assert fused == collectives()
