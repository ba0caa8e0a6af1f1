"""`athletes`: an articulated figure doing an exercise, with its COCO-17 keypoints.

A clip is drawn from continuous parameters that depend only on (seed, split,
index), never on the resolution (as in `moving_shapes`), so it renders at any
frames/size, anti-aliased by supersampling: body proportions around one of three
body types, clothes/skin/background colours, an exercise with its speed
(repetitions per clip), phase and range of motion, the camera's view angle, and
the figure's size and place in the frame (it stays inside for the whole clip).
The figure is 3D (see `athletes_motion`), seen by an orthographic camera turned
by `yaw` about the vertical; limbs are capsules painted far to near, the head a
disc with a hair cap at the back (so one sees which way it faces).

Caption grammar (fixed: tools parse it):
  a(n) {build} person with {skin} skin in a(n) {shirt} shirt and {shorts} shorts
  doing {exercise} on a(n) {background} background

Held out: the test split holds only the (exercise, body type) pairs in HELD_OUT,
the train split never does; each body type is held out for two exercises.
"""
from __future__ import annotations

import dataclasses
import re
import zlib

import numpy as np

from imagen_video.data import athletes_motion as am
from imagen_video.data.athletes_motion import BODY_TYPES, EXERCISES, PROPORTIONS  # noqa: F401
from imagen_video.media.raster import Canvas
from imagen_video.pose.skeleton import KEYPOINTS

CLOTHES = {
    "red": (0.85, 0.1, 0.1), "orange": (0.95, 0.5, 0.05), "yellow": (0.95, 0.85, 0.1),
    "green": (0.1, 0.6, 0.2), "blue": (0.1, 0.25, 0.85), "purple": (0.5, 0.15, 0.65),
    "black": (0.08, 0.08, 0.08), "white": (0.97, 0.97, 0.97),
}
SKIN = {"light": (0.96, 0.8, 0.69), "tan": (0.87, 0.65, 0.47), "brown": (0.63, 0.42, 0.27),
        "dark": (0.36, 0.23, 0.15)}
BACKGROUNDS = {"gray": (0.6, 0.6, 0.62), "sky": (0.62, 0.8, 0.95), "mint": (0.7, 0.9, 0.78),
               "sand": (0.9, 0.82, 0.62), "slate": (0.3, 0.36, 0.45)}
HAIR = (0.12, 0.08, 0.05)
MIN_CONTRAST = 0.3  # RGB distance between the figure's colours and the background
HELD_OUT = frozenset({
    ("jumping_jacks", "short_stocky"), ("squats", "tall_thin"), ("lunges", "average"),
    ("running_in_place", "tall_thin"), ("arm_circles", "short_stocky"), ("push_ups", "average"),
})
SPLITS = ("train", "test")
# Camera yaw range in degrees (0: facing the camera, 90: facing right); the
# flag says a random sign flips it (profile views of either side).
VIEWS = {"jumping_jacks": (-25, 25, False), "squats": (-50, 50, False), "lunges": (50, 90, True),
         "running_in_place": (25, 70, True), "arm_circles": (-30, 30, False),
         "push_ups": (70, 90, True)}
REPS = (1.0, 2.5)  # repetitions per clip
ZOOM = (0.6, 0.8)  # frame heights per average person's height, before fitting the frame
MARGIN = 0.05  # frame heights kept free around the figure (over a pixel at 24 px)
_FIT_SAMPLES = 256  # times the figure's extent is checked at when placing it


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def caption(exercise: str, body_type: str, skin: str, shirt: str, shorts: str, background: str) -> str:
  build = BODY_TYPES[body_type][0]
  return (f"{_article(build)} {build} person with {skin} skin in {_article(shirt)} {shirt} shirt and "
          f"{shorts} shorts doing {EXERCISES[exercise]} on {_article(background)} {background} background")


_CAPTION = re.compile(r"an? (?P<build>.+) person with (?P<skin>.+) skin in an? (?P<shirt>.+) shirt and "
                      r"(?P<shorts>.+) shorts doing (?P<exercise>.+) on an? (?P<background>.+) background")
_FORM = ("'a(n) {build} person with {skin} skin in a(n) {shirt} shirt and {shorts} shorts "
         "doing {exercise} on a(n) {background} background'")


def parse_caption(text) -> dict:
  """Inverse of `caption`: {exercise, body_type, skin, shirt, shorts, background};
  raises ValueError naming what does not fit the grammar."""
  text = text.decode() if isinstance(text, bytes) else text  # TFDS returns bytes
  m = _CAPTION.fullmatch(" ".join(text.split()))
  if not m:
    raise ValueError(f"caption {text!r} is not of the form {_FORM}")
  # caption phrase -> stored value, per field
  builds = {phrase: k for k, (phrase, *_) in BODY_TYPES.items()}
  exercises = {phrase: k for k, phrase in EXERCISES.items()}
  out = {}
  for field, key, allowed in (("build", "body_type", builds), ("skin", "skin", SKIN),
                              ("shirt", "shirt", CLOTHES), ("shorts", "shorts", CLOTHES),
                              ("exercise", "exercise", exercises),
                              ("background", "background", BACKGROUNDS)):
    value = m.group(field)
    if value not in allowed:
      raise ValueError(f"caption {text!r}: {field} {value!r} not in {sorted(allowed)}")
    out[key] = builds.get(value, exercises.get(value, value)) if key in ("body_type", "exercise") else value
  if caption(**out) != " ".join(text.split()):
    raise ValueError(f"caption {text!r}: wrong article; expected {caption(**out)!r}")
  return out


@dataclasses.dataclass(frozen=True)
class Clip:
  """Resolution-free description of one clip. Image positions are in frame-height
  units (x in [0, aspect], y in [0, 1] downwards): a world point (x, y, z) turned by
  `yaw` lands at (origin_x + scale * screen_x, origin_y - scale * y)."""
  exercise: str
  body_type: str
  body: am.Body
  motion: am.Motion
  skin: str
  shirt: str
  shorts: str
  background: str
  yaw: float  # degrees
  scale: float
  origin: tuple[float, float]
  aspect: float

  @property
  def caption(self) -> str:
    return caption(self.exercise, self.body_type, self.skin, self.shirt, self.shorts, self.background)

  def project(self, t) -> tuple[dict, dict, np.ndarray]:
    """({joint: image position [T, 2]}, {joint: depth toward the camera [T]},
    visibility of the 17 keypoints [T, 17]) at clip times `t` in [0, 1); the joints
    are the 17 keypoints, pelvis, neck, head (centre) and hair (its cap's centre)."""
    j, normals, fwd, up = am.joints(self.body, self.motion, t)
    yaw = np.deg2rad(self.yaw)
    to_camera = np.array([-np.sin(yaw), 0.0, np.cos(yaw)])
    pos, depth = {}, {}
    for name, p in j.items():
      screen_x = p[:, 0] * np.cos(yaw) + p[:, 2] * np.sin(yaw)
      pos[name] = np.stack([self.origin[0] + self.scale * screen_x, self.origin[1] - self.scale * p[:, 1]], -1)
      depth[name] = p @ to_camera
    # A face point is seen unless it faces well away from the camera (the far eye and
    # ear in profile); body joints are always labelled, as pose estimators give them.
    vis = np.stack([normals[k] @ to_camera > -0.2 if k in normals else np.ones(len(depth[k]), bool)
                    for k in KEYPOINTS], -1)
    pos["hair"] = pos["head"] + self.scale * self.body.head_r * _screen(up * 0.15 - fwd * 0.25, yaw)
    return pos, depth, vis

  def keypoints(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints [frames, 17, 2] as (x, y) in [0, 1], visibility [frames, 17]) in {0, 1}."""
    pos, _, vis = self.project(np.arange(frames) / frames)
    xy = np.stack([pos[k] for k in KEYPOINTS], 1) / np.array([self.aspect, 1.0])
    return xy.astype(np.float32), vis.astype(np.float32)


def _screen(v, yaw):
  """World directions [T, 3] -> image directions [T, 2] (y downwards), unscaled."""
  return np.stack([v[:, 0] * np.cos(yaw) + v[:, 2] * np.sin(yaw), -v[:, 1]], -1)


def _pick(rng, colors: dict, far_from=None):
  """A random name; with `far_from`, only colours contrasting with that RGB."""
  ok = [n for n, rgb in colors.items()
        if far_from is None or np.linalg.norm(np.subtract(rgb, far_from)) > MIN_CONTRAST]
  return ok[rng.integers(len(ok))]


def sample_clip(seed: int, split: str, index: int, aspect: float = 1.0) -> Clip:
  """The clip `index` of `split` for `seed`; independent of frames and size."""
  if split not in SPLITS:
    raise ValueError(f"split {split!r}: expected one of {SPLITS}")
  rng = np.random.default_rng([seed, zlib.crc32(split.encode()), index])
  exercise = list(EXERCISES)[rng.integers(len(EXERCISES))]
  types = [b for b in BODY_TYPES if ((exercise, b) in HELD_OUT) == (split == "test")]
  body_type = types[rng.integers(len(types))]
  body = am.sample_body(body_type, rng)
  motion = am.Motion(exercise, float(rng.uniform(*REPS)), float(rng.uniform()),
                     float(rng.uniform(0.8, 1.0)), int(rng.choice([-1, 1])))
  background = _pick(rng, BACKGROUNDS)
  bg = BACKGROUNDS[background]
  skin = _pick(rng, SKIN, bg)
  shirt = _pick(rng, CLOTHES, bg)
  shorts = _pick(rng, {k: v for k, v in CLOTHES.items() if k != shirt}, bg)
  lo, hi, flip = VIEWS[exercise]
  yaw = float(rng.uniform(lo, hi)) * (int(rng.choice([-1, 1])) if flip else 1)
  # Fit the figure's extent over the whole clip (joints padded by the thickest
  # part) into the frame, then place it anywhere that keeps it inside.
  probe = Clip(exercise, body_type, body, motion, skin, shirt, shorts, background, yaw, 1.0, (0.0, 0.0), aspect)
  pos, _, _ = probe.project(np.arange(_FIT_SAMPLES) / _FIT_SAMPLES)
  pad = max(body.head_r, body.torso_depth / 2, 1.2 * body.leg_r)
  pts = np.concatenate(list(pos.values()))
  lo_xy, hi_xy = pts.min(0) - pad, pts.max(0) + pad
  extent = hi_xy - lo_xy
  scale = min(float(rng.uniform(*ZOOM)), (1 - 2 * MARGIN) / extent[1], (aspect - 2 * MARGIN) / extent[0])
  room = np.array([aspect, 1.0]) - 2 * MARGIN - scale * extent
  origin = MARGIN - scale * lo_xy + rng.uniform(0, 1, 2) * room
  return dataclasses.replace(probe, scale=float(scale), origin=(float(origin[0]), float(origin[1])))


def _background(color, height: int, width: int, ss: int) -> np.ndarray:
  """A vertical gradient, lighter at the top, at sub-pixel resolution [H*ss, W*ss, 3]."""
  c = np.asarray(color, np.float32)
  y = ((np.arange(height * ss) + 0.5) / (height * ss)).astype(np.float32)[:, None, None]
  column = (1 - y) * (0.75 * c + 0.25) + y * (0.85 * c)
  return np.broadcast_to(column, (height * ss, width * ss, 3))


def _groups(clip: Clip, pos: dict, depth: dict, f: int) -> list:
  """The figure's parts at frame f as (depth, [(shape, args, rgb), ...]), each part
  drawn whole, parts far to near."""
  b, s = clip.body, clip.scale
  p = {k: v[f] for k, v in pos.items()}
  d = {k: v[f] for k, v in depth.items()}
  skin, shirt, shorts = SKIN[clip.skin], CLOTHES[clip.shirt], CLOTHES[clip.shorts]
  lerp = lambda a, c, w: p[a] + w * (p[c] - p[a])
  mean = lambda *names: float(np.mean([d[n] for n in names]))
  groups = []
  for side in ("left", "right"):
    sh, el, wr, hip, kn, an = (f"{side}_{k}" for k in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"))
    groups += [
        (mean(hip, kn), [("capsule", (p[hip], p[kn], s * b.leg_r), skin),
                         ("capsule", (p[hip], lerp(hip, kn, 0.55), s * 1.2 * b.leg_r), shorts)]),
        (mean(kn, an), [("capsule", (p[kn], p[an], s * 0.85 * b.leg_r), skin)]),
        (mean(sh, el), [("capsule", (p[sh], p[el], s * b.arm_r), skin),
                        ("capsule", (p[sh], lerp(sh, el, 0.45), s * 1.3 * b.arm_r), shirt)]),
        (mean(el, wr), [("capsule", (p[el], p[wr], s * 0.9 * b.arm_r), skin)]),
    ]
  # The torso sits a little behind limbs at its own depth (arms hanging at its sides).
  torso = mean("pelvis", "neck") - 0.02
  mid_shoulder = (p["left_shoulder"] + p["right_shoulder"]) / 2
  groups += [
      (torso, [("polygon", ([p["left_shoulder"], p["right_shoulder"], p["right_hip"], p["left_hip"]],), shirt),
               ("capsule", (mid_shoulder, p["pelvis"], s * b.torso_depth / 2), shirt),
               ("capsule", (p["left_shoulder"], p["right_shoulder"], s * 1.3 * b.arm_r), shirt)]),
      (torso + 1e-4, [("capsule", (p["left_hip"], p["right_hip"], s * 1.25 * b.leg_r), shorts)]),
      (d["head"], [("capsule", (p["neck"], p["head"], s * b.arm_r), skin),
                   ("disc", (p["hair"], s * b.head_r), HAIR),
                   ("disc", (p["head"], s * b.head_r), skin)]),
  ]
  return sorted(groups, key=lambda g: g[0])


def render(clip: Clip, frames: int, height: int, width: int, supersample: int = 4) -> np.ndarray:
  """Render `clip` as uint8 [frames, height, width, 3]."""
  if abs(width / height - clip.aspect) > 1e-6:
    raise ValueError(f"render size {width}x{height} has aspect {width / height:.4f}, "
                     f"but the clip was sampled for aspect {clip.aspect:.4f}")
  pos, depth, _ = clip.project(np.arange(frames) / frames)
  bg = _background(BACKGROUNDS[clip.background], height, width, supersample)
  out = np.empty((frames, height, width, 3), np.uint8)
  for f in range(frames):
    canvas = Canvas(height, width, bg, supersample)
    for _, shapes in _groups(clip, pos, depth, f):
      for shape, args, rgb in shapes:
        getattr(canvas, shape)(*args, rgb)
    out[f] = canvas.to_uint8()
  return out


def labels(clip: Clip, frames: int) -> dict:
  """Structured labels stored beside the caption (read by checks later)."""
  keypoints, visibility = clip.keypoints(frames)
  return {
      "caption": clip.caption,
      "exercise": clip.exercise,
      "body_type": clip.body_type,
      "skin": clip.skin,
      "shirt": clip.shirt,
      "shorts": clip.shorts,
      "background": clip.background,
      "keypoints": keypoints,
      "visibility": visibility,
      "proportions": clip.body.vector(),
      "reps": np.float32(clip.motion.reps),
      "phase": np.float32(clip.motion.phase),
      "yaw": np.float32(clip.yaw),
  }
