"""A small keypoint detector for `athletes` renderings (the pose-following metric's eye).

A tiny conv net (flax.nnx) maps a frame [H, W, 3] to 17 heatmaps at half the
resolution; each keypoint is the soft-argmax (expected position under the
heatmap's softmax) of its heatmap, so positions are sub-pixel. The encoder goes
down to about 8 px (two or more stride-2 convolutions) and back up to half
resolution with a skip connection, so every heatmap sees the whole figure (which
way it faces decides left from right).

Training (`pose_detector/train.py`): frames of random `athletes` train-split clips rendered on the fly
(frames are independent images), kept in a ring buffer that a few fresh clips
refresh every step; loss = distance (frame-height units) between soft-argmax and
the true keypoint over visible joints, plus a cross-entropy of each heatmap
against a Gaussian around the true position (keeps heatmaps unimodal, trains
faster). Light pixel noise and blur are mixed in so generated samples, which are
never as clean as renderings, do not throw it off.

    det = train.load_or_train("/tmp/pose/detector32.npz", 32, 32)   # pose_detector/train.py
    keypoints = det.predict(frames)          # uint8 [N, H, W, 3] or [B, T, H, W, 3]
    accuracy.evaluate(det)                   # its own error on test-split renderings

    python -m imagen_video.pose_detector.accuracy --height 32 --width 32 --out /tmp/pose/detector32.npz

Distances are in frame heights: a normalised (x, y) difference scaled by
(width / height, 1).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imagen_video.pose.skeleton import NUM_KEYPOINTS

FORMAT = "imagen_video.pose_detector/1"
BOTTLENECK_PX = 8  # the encoder halves the frame until its shorter side is about this


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
  height: int
  width: int
  channels: tuple[int, ...] = (32, 48, 64)  # full res, then after each stride-2 conv

  def __post_init__(self):
    object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
    if len(self.channels) < 3:
      raise ValueError(f"channels {self.channels}: expected at least 3 (full, half, quarter resolution)")
    down = len(self.channels) - 1
    if self.height % 2 ** down or self.width % 2 ** down:
      raise ValueError(f"frames {self.height}x{self.width} must divide by 2^{down} "
                       f"for {len(self.channels)} channel levels")

  @staticmethod
  def for_size(height: int, width: int, base: int = 32) -> "DetectorConfig":
    """Levels down to about BOTTLENECK_PX px (at least quarter resolution)."""
    down = max(2, int(round(math.log2(max(1, min(height, width) / BOTTLENECK_PX)))))
    while down > 2 and (height % 2 ** down or width % 2 ** down):
      down -= 1
    channels = tuple(min(128, int(base * 1.5 ** i) // 8 * 8) for i in range(down + 1))
    return DetectorConfig(height, width, channels)

  @property
  def heatmap_size(self) -> tuple[int, int]:
    return self.height // 2, self.width // 2


def _groups(c: int) -> int:
  return max(g for g in (8, 4, 2, 1) if c % g == 0)


class _ConvNorm(nnx.Module):
  def __init__(self, cin: int, cout: int, stride: int = 1, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (3, 3), strides=stride, padding="SAME", rngs=rngs)
    self.norm = nnx.GroupNorm(cout, num_groups=_groups(cout), rngs=rngs)

  def __call__(self, x):
    return jax.nn.silu(self.norm(self.conv(x)))


class HeatmapNet(nnx.Module):
  """[N, H, W, 3] in [-1, 1] -> heatmap logits [N, H/2, W/2, 17]."""

  def __init__(self, config: DetectorConfig, *, rngs: nnx.Rngs):
    c = config.channels
    self.stem = _ConvNorm(3, c[0], rngs=rngs)
    downs, mids = [], []
    for a, b in zip(c[:-1], c[1:]):
      downs.append(_ConvNorm(a, b, 2, rngs=rngs))
      mids.append(_ConvNorm(b, b, rngs=rngs))
    self.downs, self.mids = nnx.List(downs), nnx.List(mids)
    # decoder: from the bottleneck back up to half resolution (level 1), with skips
    ups = [_ConvNorm(c[i + 1] + c[i], c[i], rngs=rngs) for i in range(len(c) - 2, 0, -1)]
    self.ups = nnx.List(ups)
    self.head = nnx.Conv(c[1], NUM_KEYPOINTS, (1, 1), rngs=rngs)

  def __call__(self, x):
    h = self.stem(x)
    skips = []
    for down, mid in zip(self.downs, self.mids):
      h = mid(down(h))
      skips.append(h)
    skips.pop()  # the bottleneck itself
    for up in self.ups:
      h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
      h = up(jnp.concatenate([h, skips.pop()], axis=-1))
    return self.head(h)


def soft_argmax(logits):
  """Heatmap logits [..., h, w, K] -> (x, y) [..., K, 2] normalised to [0, 1] (pixel
  centres of the heatmap grid), and the softmax [..., h, w, K]."""
  h, w = logits.shape[-3:-1]
  flat = logits.reshape(logits.shape[:-3] + (h * w, logits.shape[-1]))
  p = jax.nn.softmax(flat.astype(jnp.float32), axis=-2).reshape(logits.shape)
  xs = (jnp.arange(w) + 0.5) / w
  ys = (jnp.arange(h) + 0.5) / h
  x = jnp.einsum("...hwk,w->...k", p, xs)
  y = jnp.einsum("...hwk,h->...k", p, ys)
  return jnp.stack([x, y], -1), p


def _to_input(frames) -> jnp.ndarray:
  return frames.astype(jnp.float32) / 127.5 - 1.0


def _as_uint8(frames) -> np.ndarray:
  """uint8 frames, or float in [0, 1] (rounded to uint8 as a saved sample would be)."""
  f = np.asarray(frames)
  if f.dtype == np.uint8:
    return f
  if not np.issubdtype(f.dtype, np.floating):
    raise TypeError(f"frames: expected uint8 or float in [0, 1], got dtype {f.dtype}")
  if f.size and (np.nanmin(f) < -1e-6 or np.nanmax(f) > 1 + 1e-6):
    raise ValueError(f"frames: float values must lie in [0, 1], got [{np.nanmin(f):g}, {np.nanmax(f):g}]")
  return np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)


def distances(pred, truth, height: int, width: int) -> np.ndarray:
  """Distances in frame heights between normalised (x, y) points [..., 2] -> [...]."""
  d = (np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) * np.array([width / height, 1.0])
  return np.sqrt((d ** 2).sum(-1))


class Detector:
  """A trained HeatmapNet with its config; `predict` decodes keypoints."""

  def __init__(self, config: DetectorConfig, params, info: dict | None = None):
    self.config = config
    self.info = dict(info or {})
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: HeatmapNet(config, rngs=nnx.Rngs(0))))
    self._graphdef = graphdef
    self._state = abstract
    nnx.replace_by_pure_dict(self._state, jax.tree.map(jnp.asarray, params))

    def apply(state, frames):
      return soft_argmax(nnx.merge(graphdef, state)(_to_input(frames)))[0]
    self._apply = jax.jit(apply)

  @property
  def params(self) -> dict:
    return nnx.to_pure_dict(self._state)

  def predict(self, frames, batch: int = 256) -> np.ndarray:
    """Keypoints float32 [..., 17, 2] (x, y in [0, 1]) of frames [N, H, W, 3] or videos
    [B, T, H, W, 3] (uint8, or float in [0, 1]) at the detector's size."""
    f = _as_uint8(frames)
    h, w = self.config.height, self.config.width
    if f.ndim < 4 or f.shape[-3:] != (h, w, 3):
      raise ValueError(f"frames of shape {f.shape}: this detector expects [..., {h}, {w}, 3] "
                       f"(it was trained at {h}x{w})")
    lead = f.shape[:-3]
    flat = f.reshape((-1, h, w, 3))
    out = np.zeros((len(flat), NUM_KEYPOINTS, 2), np.float32)
    for i in range(0, len(flat), batch):
      chunk = flat[i:i + batch]
      n = len(chunk)
      if n < batch and len(flat) > batch:  # one compiled shape for every chunk of a long input
        chunk = np.concatenate([chunk, np.zeros((batch - n, h, w, 3), np.uint8)])
      out[i:i + n] = np.asarray(self._apply(self._state, jnp.asarray(chunk)))[:n]
    return out.reshape(lead + (NUM_KEYPOINTS, 2))

  def save(self, path) -> str:
    """One .npz (params as 'param/<path>' arrays, config and info as JSON), written atomically."""
    path = os.fspath(path)
    arrays = {"param/" + "/".join(map(str, k)): np.asarray(v)
              for k, v in _flatten(self.params).items()}
    meta = {"format": FORMAT, "config": dataclasses.asdict(self.config), "info": self.info}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".detector.", suffix=".tmp.npz", dir=folder)
    os.close(fd)
    try:
      with open(tmp, "wb") as f:
        np.savez(f, **arrays)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    return path


def _flatten(tree, prefix=()) -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: dict) -> dict:
  out = {}
  for key, v in flat.items():
    node = out
    parts = [int(p) if p.isdigit() else p for p in key.split("/")]
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = v
  return out


def load(path) -> Detector:
  """The Detector saved at `path`; FileNotFoundError / ValueError naming the file otherwise."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"pose detector file {path!r} does not exist "
                            "(train one with pose_detector.train_detector / load_or_train)")
  try:
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(bytes(z["__meta__"]).decode())
      flat = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
  except Exception as e:  # truncated zip, not an npz, missing metadata...
    raise ValueError(f"pose detector file {path!r} is unreadable or not a detector "
                     f"({type(e).__name__}: {e}); delete it and train again") from e
  if meta.get("format") != FORMAT:
    raise ValueError(f"pose detector file {path!r}: format {meta.get('format')!r}, expected {FORMAT!r}")
  config = DetectorConfig(**meta["config"])
  try:
    return Detector(config, _unflatten(flat), meta.get("info"))
  except Exception as e:
    raise ValueError(f"pose detector file {path!r}: parameters do not fit its config {config} "
                     f"({type(e).__name__}: {e})") from e
