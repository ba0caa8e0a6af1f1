"""CLIP score and CLIP R-Precision of videos against their captions (numpy, on embeddings).

CLIP score (Imagen Video; CLIPSIM of Wu et al. 2021): per frame 100 x cos(image embedding,
caption embedding), floored at 0, averaged over a video's frames, then over videos; reported
with the standard error over videos.
CLIP R-Precision (Park et al. 2021, as AttnGAN's R-precision with CLIP): a video counts as a
hit when its caption is more similar to it than each of K-1 other captions of the set, drawn
at random without replacement from the set's distinct captions (K capped by how many there
are); similarity = mean over frames of the cosine. Standard error sqrt(p (1 - p) / n).
"""
from __future__ import annotations

import numpy as np

DEFAULT_K = 100  # the usual R-Precision setting: 1 true + 99 random captions


def normalize(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def frame_cosines(image_emb, text_emb) -> np.ndarray:
  """[N, T, P] frame embeddings and [N, P] caption embeddings -> cosines [N, T]."""
  return np.einsum("ntp,np->nt", normalize(image_emb), normalize(text_emb))


def clip_scores(image_emb, text_emb) -> np.ndarray:
  """Per-video CLIP score [N]: mean over frames of max(100 cos, 0)."""
  return np.maximum(100.0 * frame_cosines(image_emb, text_emb), 0.0).mean(axis=1)


def mean_se(values) -> tuple[float, float]:
  v = np.asarray(values, np.float64)
  se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
  return float(v.mean()), se


def r_precision(image_emb, captions: list[str], text_emb_of: dict[str, np.ndarray], k: int = DEFAULT_K,
                seed: int = 0) -> dict:
  """Hits of each video's caption among it and K-1 other distinct captions of the set;
  `image_emb`: [N, T, P], or a list of [T_i, P] (videos of different lengths)."""
  distinct = sorted(set(captions))
  k_used = min(k, len(distinct))
  if k_used < 2:
    raise ValueError(f"CLIP R-Precision needs at least 2 distinct captions, the set has {len(distinct)}")
  rng = np.random.default_rng(seed)
  hits = []
  for video, caption in zip(image_emb, captions):
    others = [c for c in distinct if c != caption]
    chosen = [caption] + [others[i] for i in rng.choice(len(others), k_used - 1, replace=False)]
    texts = normalize(np.stack([text_emb_of[c] for c in chosen]))
    sims = (normalize(video) @ texts.T).mean(axis=0)  # mean over frames, [K]
    hits.append(bool(sims[0] > sims[1:].max()))
  p = float(np.mean(hits))
  return {"r_precision": p, "r_precision_se": float(np.sqrt(p * (1 - p) / len(hits))), "k": k_used,
          "hits": hits}
