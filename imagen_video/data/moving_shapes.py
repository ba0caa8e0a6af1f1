"""`moving_shapes`: one shape on black moving at constant speed (DESIGN.md grammar).

A clip is drawn from continuous parameters that depend only on (seed, split,
index), never on the resolution, so the same clip can be rendered at any
frames/size: the low-res rendering of a clip is an area-downsample of its
high-res rendering, and TSR/SSR stages get same-content (low, high) pairs.
Pixels are anti-aliased by supersampling the exact shape coverage.
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np

COLORS = {
    "red": (1, 0, 0),
    "green": (0, 1, 0),
    "blue": (0, 0, 1),
    "yellow": (1, 1, 0),
    "magenta": (1, 0, 1),
    "cyan": (0, 1, 1),
    "white": (1, 1, 1),
}
SHAPES = ("circle", "square", "triangle")
# Image coordinates: x grows to the right, y grows downwards.
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPLITS = ("train", "test")
# Circumradius range in frame heights: 2.2-3.5 px at 16x16. The demo cascade draws larger
# shapes (configs/cascade_tiny.py: at its 16x16 base these differ by about a pixel).
SIZES = (0.14, 0.22)


def size_args(builder) -> dict:
  """`sample_clip`'s sizes and gap from a dataset's builder parameters (config.data.builder)."""
  return dict(sizes=tuple(builder.get("sizes", SIZES)), gap=builder.get("gap"))


def caption(color: str, shape: str, direction: str) -> str:
  return f"a {color} {shape} moving {direction}"


def parse_caption(text: str) -> tuple[str, str, str]:
  """Inverse of `caption`; raises ValueError naming what does not fit the grammar."""
  text = text.decode() if isinstance(text, bytes) else text  # TFDS returns bytes
  words = text.strip().split()
  if len(words) != 5 or words[0] != "a" or words[3] != "moving":
    raise ValueError(f"caption {text!r} is not of the form 'a {{color}} {{shape}} moving {{direction}}'")
  color, shape, direction = words[1], words[2], words[4]
  for value, allowed, field in ((color, COLORS, "color"), (shape, SHAPES, "shape"),
                                (direction, DIRECTIONS, "direction")):
    if value not in allowed:
      raise ValueError(f"caption {text!r}: {field} {value!r} not in {sorted(allowed)}")
  return color, shape, direction


@dataclasses.dataclass(frozen=True)
class Clip:
  """Resolution-free description of one clip.

  Lengths are in units of the frame height; x spans [0, aspect], y spans [0, 1].
  `start` is the shape centre at t=0; `velocity` is per unit of clip time
  (t in [0, 1) over the clip), so the centre at t is start + t * velocity.
  """
  color: str
  shape: str
  direction: str
  size: float  # circumradius
  start: tuple[float, float]
  velocity: tuple[float, float]
  aspect: float
  wrap: bool = False  # the frame is a torus: what leaves one side enters the opposite one

  @property
  def caption(self) -> str:
    return caption(self.color, self.shape, self.direction)

  def centers(self, frames: int) -> np.ndarray:
    """Shape centres [frames, 2] (x, y), normalised to [0, 1] on each axis."""
    t = np.arange(frames) / frames
    xy = np.asarray(self.start)[None] + t[:, None] * np.asarray(self.velocity)[None]
    xy = xy / np.array([self.aspect, 1.0])
    return (xy % 1.0 if self.wrap else xy).astype(np.float32)


def sample_clip(seed: int, split: str, index: int, aspect: float = 1.0, wrap: bool = False,
                sizes: tuple[float, float] = SIZES, gap: float | None = None) -> Clip:
  """The clip `index` of `split` for `seed`; independent of frames and size.

  `wrap`: the same draws, but the shape starts anywhere and wraps around the frame's
  borders, so its motion can continue for any length (video extension). `sizes`: the
  circumradius range and `gap` the least distance from the circumcircle to a border (frame
  heights; default a quarter of the size): the same draws, so only the size and the room to
  move change."""
  rng = np.random.default_rng([seed, zlib.crc32(split.encode()), index])
  color = list(COLORS)[rng.integers(len(COLORS))]
  shape = SHAPES[rng.integers(len(SHAPES))]
  direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
  size = float(rng.uniform(*sizes))
  # The shape stays inside the frame for the whole clip, with a gap: its
  # centre keeps a margin of size + gap from every border.
  margin = size + (0.25 * size if gap is None else gap)
  lo, hi = np.array([margin, margin]), np.array([aspect - margin, 1.0 - margin])
  d = np.asarray(DIRECTIONS[direction], np.float64)
  axis = 0 if d[0] else 1
  room = hi[axis] - lo[axis]
  travel = float(rng.uniform(0.45, 0.8)) * room
  start = rng.uniform(lo, hi)
  start[axis] = lo[axis] + rng.uniform(0, room - travel) if d[axis] > 0 else hi[axis] - rng.uniform(0, room - travel)
  if wrap:
    start = rng.uniform((0.0, 0.0), (aspect, 1.0))
  return Clip(color, shape, direction, size, (float(start[0]), float(start[1])),
              tuple(float(v) for v in d * travel), aspect, wrap)


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
  if shape == "circle":
    return dx * dx + dy * dy <= r * r
  if shape == "square":
    half = r / np.sqrt(2.0)
    return (np.abs(dx) <= half) & (np.abs(dy) <= half)
  if shape == "triangle":  # equilateral, apex up (y grows downwards)
    # Inside iff below the two upper edges and above the base.
    s3 = np.sqrt(3.0)
    return (dy <= r / 2) & (dy >= -r + s3 * np.abs(dx))
  raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render(clip: Clip, frames: int, height: int, width: int, supersample: int = 4) -> np.ndarray:
  """Render `clip` as uint8 [frames, height, width, 3]."""
  if abs(width / height - clip.aspect) > 1e-6:
    raise ValueError(f"render size {width}x{height} has aspect {width / height:.4f}, "
                     f"but the clip was sampled for aspect {clip.aspect:.4f}")
  centers = clip.centers(frames) * np.array([clip.aspect, 1.0])
  out = np.empty((frames, height, width, 3), np.uint8)
  rgb = np.asarray(COLORS[clip.color], np.float32)
  # With wrap, the copies one frame-width/height away draw the part across a border.
  shifts = [(i * clip.aspect, j) for i in (-1, 0, 1) for j in (-1, 0, 1)] if clip.wrap else [(0, 0)]
  for f, (cx, cy) in enumerate(centers):
    cover = coverage(clip.shape, height, width, cx, cy, clip.size, supersample, shifts)
    out[f] = np.round(cover[..., None] * rgb * 255).astype(np.uint8)
  return out


def coverage(shape: str, height: int, width: int, cx: float, cy: float, size: float,
             supersample: int = 4, shifts=((0, 0),)) -> np.ndarray:
  """Anti-aliased coverage [H, W] in [0, 1] of `shape` with circumradius `size` centred at
  (cx, cy) plus each of `shifts` (frame-height units; the union), by supersampling it."""
  ss = supersample
  # Sub-pixel sample positions in frame-height units.
  ys = (np.arange(height * ss) + 0.5) / (height * ss)
  xs = (np.arange(width * ss) + 0.5) / (height * ss)
  mask = np.zeros((height * ss, width * ss), bool)
  for sx, sy in shifts:
    mask |= _inside(shape, xs[None, :] - cx - sx, ys[:, None] - cy - sy, size)
  return mask.reshape(height, ss, width, ss).mean(axis=(1, 3))


def labels(clip: Clip, frames: int) -> dict:
  """Structured labels stored beside the caption (read by checks later)."""
  return {
      "caption": clip.caption,
      "color": clip.color,
      "shape": clip.shape,
      "direction": clip.direction,
      "positions": clip.centers(frames),
      "size": np.float32(clip.size),
  }
