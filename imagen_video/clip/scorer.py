"""Embeds videos and captions with a converted CLIP checkpoint and scores them.

    scorer = ClipScorer(ckpt_dir)
    result = scorer.score(videos, captions)   # uint8 [T, H, W, 3] each (any size); see `metrics`

Frames go through the checkpoint's preprocessing on the host, then the image tower in fixed
batches (one compilation; the last batch padded); the batch is sharded over every device.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from imagen_video.clip import checkpoint, metrics


class ClipScorer:
  def __init__(self, ckpt_dir: str, *, dtype: str = "float32", batch: int = 32, devices=None):
    self.ckpt_dir = ckpt_dir
    self.cfg = checkpoint.load_config(ckpt_dir)
    self.preprocess = checkpoint.load_preprocess(ckpt_dir)
    self.tokenizer = checkpoint.load_tokenizer(ckpt_dir)
    model = checkpoint.restore(ckpt_dir, dtype=dtype)
    devices = list(jax.devices() if devices is None else devices)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    self.batch = -(-batch // len(devices)) * len(devices)  # a multiple of the devices
    graphdef, state = nnx.split(model)
    rep, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    self.state = jax.device_put(state, rep)
    image = lambda s, x: nnx.merge(graphdef, s).encode_image(x).astype(np.float32)
    text = lambda s, ids: nnx.merge(graphdef, s).encode_text(ids).astype(np.float32)
    self._image = jax.jit(image, in_shardings=(rep, rows), out_shardings=rows)
    self._text = jax.jit(text, in_shardings=(rep, rows), out_shardings=rows)

  def _batched(self, fn, x: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(x), self.batch):
      chunk = x[i:i + self.batch]
      pad = self.batch - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
      out.append(np.asarray(fn(self.state, chunk))[:self.batch - pad])
    return np.concatenate(out)

  def embed_frames(self, frames) -> np.ndarray:
    """uint8 frames [N, H, W, 3] -> image embeddings [N, projection_dim] (unnormalised)."""
    return self._batched(self._image, self.preprocess(frames))

  def embed_texts(self, texts: list[str]) -> np.ndarray:
    return self._batched(self._text, self.tokenizer(list(texts)))

  def embed_videos(self, videos) -> list[np.ndarray]:
    """uint8 videos (each [T_i, H_i, W_i, 3]) -> [T_i, projection_dim] each. Frames of
    consecutive videos fill the batches, preprocessed as they go (bounded host memory)."""
    lengths, pending, done = [], [], []
    for video in videos:
      pending.append(self.preprocess(video))
      lengths.append(len(pending[-1]))
      if sum(map(len, pending)) >= self.batch:
        frames = np.concatenate(pending)
        full = len(frames) - len(frames) % self.batch
        done.append(self._batched(self._image, frames[:full]))
        pending = [frames[full:]]
    if sum(map(len, pending)):
      done.append(self._batched(self._image, np.concatenate(pending)))
    return np.split(np.concatenate(done), np.cumsum(lengths)[:-1])

  def score(self, videos, captions: list[str], k: int = metrics.DEFAULT_K, seed: int = 0) -> dict:
    """Per-video CLIP scores, their mean and standard error, and R-Precision at K."""
    if len(captions) != len(videos) or not len(videos):
      raise ValueError(f"CLIP score: {len(videos)} videos but {len(captions)} captions (expected the same, > 0)")
    return self.score_embedded(self.embed_videos(videos), captions, k=k, seed=seed)

  def score_embedded(self, image: list[np.ndarray], captions: list[str], k: int = metrics.DEFAULT_K,
                     seed: int = 0) -> dict:
    """`score` from frame embeddings already computed (e.g. one set against several captionings)."""
    captions = list(captions)
    distinct = sorted(set(captions))
    text_of = dict(zip(distinct, self.embed_texts(distinct)))
    scores = np.array([metrics.clip_scores(e[None], text_of[c][None])[0] for e, c in zip(image, captions)])
    mean, se = metrics.mean_se(scores)
    out = {"clip_score": mean, "clip_score_se": se, "scores": scores.tolist(), "num": len(captions)}
    if len(distinct) >= 2:
      out.update(metrics.r_precision(image, captions, text_of, k=k, seed=seed))
    return out
