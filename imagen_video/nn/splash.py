"""Splash attention (the Pallas TPU flash kernel of `jax.experimental.pallas.ops.tpu.splash_attention`)
as an `attention.attend` backend.

Any lengths: q, k, v are padded to multiples of 128 and the padded keys masked by segment ids,
as is a key-padding mask ([N or 1, 1, 1, S]). No additive bias (T5's relative position bias
stays on XLA; see `supports`). Under `sharding.activation_rules` the kernel runs per device in
`jax.shard_map` over the batch and heads axes: XLA cannot partition a Pallas call, it would
gather the whole batch onto every device. Off TPU it runs in Pallas' interpreter (CPU tests).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from imagen_video.parallel import sharding

BLOCK = 128  # TPU lanes: sequence blocks are multiples of this


def supports(q, k, *, bias=None, mask=None) -> bool:
  """Whether splash computes this attention: no bias; no mask, or one over keys only."""
  return bias is None and (mask is None or (mask.ndim == 4 and mask.shape[1:3] == (1, 1)))


def splash_attention(q, k, v, *, bias=None, mask=None) -> jax.Array:
  """q [N, Tq, heads, head_dim], k/v [N, S, heads, head_dim] -> [N, Tq, heads, head_dim]."""
  if not supports(q, k, bias=bias, mask=mask):
    raise ValueError("splash attention takes no bias and masks over keys only "
                     "(attention_backend='auto' falls back to XLA for the others)")
  n, s = q.shape[0], k.shape[1]
  valid = jnp.ones((n, s), bool) if mask is None else jnp.broadcast_to(mask[:, 0, 0, :], (n, s))
  run = functools.partial(_local, interpret=sharding.target_platform() != "tpu")
  ctx = sharding.active_rules()
  if ctx is not None:
    mesh, rules = ctx
    names = ("batch", None, "heads", None)
    q_spec, kv_spec = (sharding.spec_for(names, rules, mesh, x.shape) for x in (q, k))
    run = jax.shard_map(run, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, P(kv_spec[0], None)),
                        out_specs=q_spec, check_vma=False)
  return run(q, k, v, valid)


def _local(q, k, v, valid, *, interpret: bool):
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
  n, tq, heads, d = q.shape
  s = k.shape[1]
  tq_pad, s_pad = _padded(tq), _padded(s)
  q = q * jnp.asarray(d ** -0.5, q.dtype)  # the kernel does not scale the logits

  def heads_first(x, length):
    return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
  segments = kernel_lib.SegmentIds(  # padded keys (id 0) are never attended
      q=jnp.ones((n, tq_pad), jnp.int32),
      kv=jnp.pad(valid, ((0, 0), (0, s_pad - s))).astype(jnp.int32))
  kernel = _kernel(heads, tq_pad, s_pad, interpret)
  out = jax.vmap(kernel)(heads_first(q, tq_pad), heads_first(k, s_pad), heads_first(v, s_pad), segments)
  return out.transpose(0, 2, 1, 3)[:, :tq]


def _padded(length: int) -> int:
  return -(-length // BLOCK) * BLOCK


def _block(length: int) -> int:
  return next(b for b in (512, 256, BLOCK) if length % b == 0)


@functools.lru_cache(maxsize=None)
def _kernel(heads: int, tq: int, s: int, interpret: bool):
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib
  bq, bkv = _block(tq), _block(s)
  sizes = kernel_lib.BlockSizes(block_q=bq, block_kv=bkv, block_kv_compute=bkv, block_q_dkv=bq,
                                block_kv_dkv=bkv, block_kv_dkv_compute=bkv, block_q_dq=bq, block_kv_dq=bkv)
  full = mask_lib.MultiHeadMask([mask_lib.FullMask((tq, s)) for _ in range(heads)])
  return kernel_lib.make_splash_mha(full, head_shards=1, q_seq_shards=1, block_sizes=sizes,
                                    interpret=interpret)
