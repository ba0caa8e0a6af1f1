"""The pose guider (Animate Anyone, Hu et al. 2023): skeleton maps -> features added to the
U-Net's first feature map.

A few per-frame 3x3 convolutions; the last one is zero-initialised, so adding a guider to a
trained model leaves its output unchanged until training teaches it the pose.
"""
from __future__ import annotations

import jax
from flax import nnx

from imagen_video.nn.layers import Conv2D


class PoseGuider(nnx.Module):
  def __init__(self, in_ch: int, hidden: tuple[int, ...], out_ch: int, *, rngs: nnx.Rngs, **kw):
    convs, c = [], in_ch
    for h in hidden:
      convs.append(Conv2D(c, h, 3, rngs=rngs, **kw))
      c = h
    self.convs = nnx.List(convs)
    self.out = Conv2D(c, out_ch, 3, zero_init=True, rngs=rngs, **kw)

  def __call__(self, pose_maps):
    """[B, T, H, W, in_ch] skeleton maps at the U-Net's input size -> [B, T, H, W, out_ch]."""
    h = pose_maps
    for conv in self.convs:
      h = jax.nn.silu(conv(h))
    return self.out(h)
