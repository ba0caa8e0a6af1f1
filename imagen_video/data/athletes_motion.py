"""Kinematics of the synthetic athletes: body proportions and exercises as 3D joint paths.

World coordinates, in units of an average person's height: x to the person's left,
y up (the floor is y = 0), z the way the person faces. Free limbs are posed by
joint angles (forward kinematics); planted ones (squat and lunge feet, push-up
hands) by two-bone inverse kinematics, so feet and hands stay put while the body
moves. Time t runs over [0, 1) per clip; every exercise repeats `reps` times per
clip, starting at `phase` (a fraction of one repetition); `amp` in [0.8, 1] scales
the range of motion. One repetition:
  jumping_jacks     arms from the sides to over the head and back, legs apart, a hop
  squats            hips down and back, torso leaning, arms raised forward; feet planted
  lunges            hips down and up in a split stance (`side`: front leg); feet planted
  running_in_place  left then right knee up, arms swinging opposite, a small bounce
  arm_circles       both arms, held out sideways, circle once (`side`: direction)
  push_ups          a plank on the toes lowers and rises; hands planted, elbows bend
"""
from __future__ import annotations

import dataclasses

import numpy as np

# id -> (caption phrase, length factors (legs, torso, arms, head), width factor, thickness factor)
BODY_TYPES = {
    "average": ("average", (1.0, 1.0, 1.0, 1.0), 1.0, 1.0),
    "tall_thin": ("tall thin", (1.22, 1.02, 1.15, 0.92), 0.85, 0.7),
    "short_stocky": ("short stocky", (0.78, 0.95, 0.85, 1.1), 1.25, 1.45),
}
EXERCISES = {  # id -> caption phrase
    "jumping_jacks": "jumping jacks",
    "squats": "squats",
    "lunges": "lunges",
    "running_in_place": "running in place",
    "arm_circles": "arm circles",
    "push_ups": "push-ups",
}
# An average body; radii are limb half-thicknesses.
_AVERAGE = {"head_r": 0.065, "neck": 0.04, "torso": 0.30, "shoulder_w": 0.23, "hip_w": 0.16,
            "upper_arm": 0.17, "forearm": 0.16, "thigh": 0.245, "shin": 0.245, "arm_r": 0.03,
            "leg_r": 0.04, "torso_depth": 0.13}
# Which factor of the body type scales each dimension.
_GROUP = {"head_r": "head", "neck": "torso", "torso": "torso", "shoulder_w": "width", "hip_w": "width",
          "upper_arm": "arms", "forearm": "arms", "thigh": "legs", "shin": "legs", "arm_r": "thick",
          "leg_r": "thick", "torso_depth": "thick"}


@dataclasses.dataclass(frozen=True)
class Body:
  head_r: float
  neck: float
  torso: float
  shoulder_w: float
  hip_w: float
  upper_arm: float
  forearm: float
  thigh: float
  shin: float
  arm_r: float
  leg_r: float
  torso_depth: float

  @property
  def ankle_height(self) -> float:  # the shin capsule's end touches the floor
    return 0.85 * self.leg_r

  @property
  def legs(self) -> float:
    return self.thigh + self.shin

  def vector(self) -> np.ndarray:
    return np.array(dataclasses.astuple(self), np.float32)


PROPORTIONS = tuple(f.name for f in dataclasses.fields(Body))


def sample_body(body_type: str, rng: np.random.Generator) -> Body:
  """Proportions drawn around the body type's: each group (legs, torso, arms, head,
  widths, thickness) +-4%, little enough that the types never overlap."""
  _, (legs, torso, arms, head), width, thick = BODY_TYPES[body_type]
  factor = {"legs": legs, "torso": torso, "arms": arms, "head": head, "width": width, "thick": thick}
  factor = {k: v * rng.uniform(0.96, 1.04) for k, v in factor.items()}
  return Body(**{k: float(v * factor[_GROUP[k]]) for k, v in _AVERAGE.items()})


@dataclasses.dataclass(frozen=True)
class Motion:
  """An exercise's parameters: `amp` scales its range of motion (depth, height),
  `side` is +1 or -1: the front leg of lunges (left/right), arm circles' direction."""
  exercise: str
  reps: float
  phase: float
  amp: float
  side: int


def _rad(deg):
  return np.deg2rad(deg)


def _direction(flex, abd, side):
  """A limb's unit direction [T, 3]: hanging down, raised forward by `flex` then
  sideways (away from the body's midline) by `abd` (radians)."""
  flex, abd = np.broadcast_arrays(np.asarray(flex, np.float64), np.asarray(abd, np.float64))
  c = np.cos(flex)
  return np.stack([side * c * np.sin(abd), -c * np.cos(abd), np.sin(flex)], axis=-1)


def _two_bone(root, target, l1, l2, bend):
  """(middle joint, end joint) of a two-bone chain from `root` reaching for `target`,
  bending toward `bend`; out of reach, the chain points at the target fully stretched."""
  d = target - root
  dist = np.linalg.norm(d, axis=-1, keepdims=True)
  u = d / np.maximum(dist, 1e-9)
  dist = np.clip(dist, abs(l1 - l2) + 1e-6, (l1 + l2) * (1 - 1e-6))
  a = (l1 * l1 - l2 * l2 + dist * dist) / (2 * dist)
  h = np.sqrt(np.maximum(l1 * l1 - a * a, 0.0))
  perp = bend - np.sum(bend * u, axis=-1, keepdims=True) * u
  perp /= np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), 1e-9)
  return root + u * a + perp * h, root + u * dist


def _vec(x, y, z, n):
  """[n, 3] from per-time arrays or constants."""
  return np.stack([np.broadcast_to(np.asarray(v, np.float64), (n,)) for v in (x, y, z)], axis=-1)


def _upper_body(body: Body, pelvis, lean):
  """Torso, hips and face from the pelvis [T, 3] and the torso's forward lean [T]
  (radians from upright); face normals decide which face points a camera sees."""
  n = len(pelvis)
  up = _vec(0, np.cos(lean), np.sin(lean), n)
  fwd = _vec(0, -np.sin(lean), np.cos(lean), n)
  left = _vec(1, 0, 0, n)
  neck = pelvis + up * body.torso
  head = neck + up * (body.neck + body.head_r)
  r = body.head_r
  j = {"pelvis": pelvis, "neck": neck, "head": head, "nose": head + r * (0.95 * fwd - 0.2 * up)}
  normals = {"nose": fwd}
  for side, name in ((1, "left"), (-1, "right")):
    j[f"{name}_shoulder"] = neck + side * left * body.shoulder_w / 2
    j[f"{name}_hip"] = pelvis + side * left * body.hip_w / 2
    j[f"{name}_eye"] = head + r * (0.8 * fwd + 0.2 * up + side * 0.35 * left)
    j[f"{name}_ear"] = head + r * (side * 0.95 * left + 0.05 * up - 0.1 * fwd)
    normals[f"{name}_eye"] = (fwd + side * 0.6 * left) / np.sqrt(1.36)
    normals[f"{name}_ear"] = side * left
  return j, normals, fwd, up


def _fk(j, start, mid, end, side, flex, abd, bend, l1, l2, sign):
  """Forward kinematics of one arm (sign=+1: the elbow folds the forearm forward)
  or leg (sign=-1: the knee folds the shin backward)."""
  j[mid] = j[start] + _direction(flex, abd, side) * l1
  j[end] = j[mid] + _direction(flex + sign * bend, abd, side) * l2


def joints(body: Body, motion: Motion, t) -> tuple[dict, dict, np.ndarray, np.ndarray]:
  """3D joints {name: [T, 3]} at times `t` [T] (the 17 COCO keypoints plus pelvis,
  neck, head centre), face normals {name: [T, 3]}, and the head's forward and up
  directions [T, 3]."""
  t = np.asarray(t, np.float64)
  n = len(t)
  theta = 2 * np.pi * (motion.reps * t + motion.phase)
  u = 0.5 - 0.5 * np.cos(theta)  # 0 at rest, 1 at the extreme of each repetition
  amp, ex, b = motion.amp, motion.exercise, body
  zeros = np.zeros(n)
  stand = b.ankle_height + b.legs
  arms = legs = None  # (flex, abd, bend) per side, for limbs posed by angles
  if ex == "jumping_jacks":
    leg_abd = _rad(3 + 15 * amp * u)
    hop = 0.04 * amp * np.abs(np.sin(theta))
    pelvis = _vec(0, b.ankle_height + b.legs * np.cos(leg_abd) + hop, 0, n)
    lean = zeros
    arms = {s: (zeros, _rad(10 + 160 * amp * u), _rad(10 * u)) for s in (1, -1)}
    legs = {s: (zeros, leg_abd, zeros) for s in (1, -1)}
  elif ex == "arm_circles":
    phi = motion.side * theta
    radius = _rad(35 * amp)
    pelvis = _vec(0, b.ankle_height + b.legs * np.cos(_rad(6)), 0, n)
    lean = zeros
    arms = {s: (radius * np.cos(phi), _rad(90) + radius * np.sin(phi), zeros) for s in (1, -1)}
    legs = {s: (zeros, _rad(6) + zeros, zeros) for s in (1, -1)}
  elif ex == "running_in_place":
    s = np.sin(theta)  # left knee up while s > 0, right knee while s < 0
    lift = {1: np.maximum(s, 0) ** 2, -1: np.maximum(-s, 0) ** 2}
    pelvis = _vec(0, stand + 0.03 * amp * np.abs(s), 0, n)
    lean = _rad(5) + zeros
    arms = {side: (-side * _rad(45 * amp) * s, _rad(8) + zeros, _rad(85) + zeros) for side in (1, -1)}
    legs = {side: (_rad(80 * amp) * lift[side], _rad(3) + zeros, _rad(10 + 104 * amp) * lift[side])
            for side in (1, -1)}
  elif ex == "squats":
    pelvis = _vec(0, 0.995 * b.legs + b.ankle_height - 0.42 * amp * b.legs * u, -0.25 * amp * b.thigh * u, n)
    lean = _rad(45 * amp) * u
    arms = {s: (_rad(90) * u, _rad(5) + zeros, zeros) for s in (1, -1)}
    feet = {s: _vec(s * 0.575 * b.hip_w, b.ankle_height, 0, n) for s in (1, -1)}
    knees_toward = {s: _vec(0.35 * s, 0, 1, n) for s in (1, -1)}
  elif ex == "lunges":
    stride = 0.3 * b.legs
    top = 0.98 * np.sqrt(b.legs ** 2 - stride ** 2)
    pelvis = _vec(0, b.ankle_height + top - 0.38 * amp * b.legs * u, 0, n)
    lean = _rad(5) * u
    arms = {s: (_rad(10) + zeros, _rad(10) + zeros, _rad(15) + zeros) for s in (1, -1)}
    front = motion.side
    feet = {s: _vec(s * b.hip_w / 2, b.ankle_height + (0 if s == front else 0.05 * b.legs * u),
                    stride if s == front else -stride, n) for s in (1, -1)}
    knees_toward = {s: _vec(0.1 * s, 0, 1, n) for s in (1, -1)}
  elif ex == "push_ups":
    # A plank pivoting on the feet; the hands stay under the shoulders' top position.
    body_line = b.legs + b.torso
    arm = b.upper_arm + b.forearm
    top = np.arcsin((0.97 * arm + b.arm_r - b.ankle_height) / body_line)
    alpha = top * (1 - 0.55 * amp * u)  # body angle above the floor
    pelvis = _vec(0, b.ankle_height + b.legs * np.sin(alpha), b.legs * np.cos(alpha), n)
    lean = np.pi / 2 - alpha
  else:
    raise ValueError(f"unknown exercise {ex!r}; expected one of {list(EXERCISES)}")

  j, normals, fwd, up = _upper_body(b, pelvis, lean)
  for side, name in ((1, "left"), (-1, "right")):
    hip, shoulder = f"{name}_hip", f"{name}_shoulder"
    if legs is not None:
      _fk(j, hip, f"{name}_knee", f"{name}_ankle", side, *legs[side], b.thigh, b.shin, -1)
    elif ex == "push_ups":  # straight legs along the body line
      j[f"{name}_knee"] = j[hip] - up * b.thigh
      j[f"{name}_ankle"] = j[hip] - up * b.legs
    else:
      j[f"{name}_knee"], j[f"{name}_ankle"] = _two_bone(j[hip], feet[side], b.thigh, b.shin, knees_toward[side])
    if arms is not None:
      _fk(j, shoulder, f"{name}_elbow", f"{name}_wrist", side, *arms[side], b.upper_arm, b.forearm, 1)
    else:
      neck_top = b.legs * np.cos(top) + b.torso * np.cos(top)
      hand = _vec(side * 0.55 * b.shoulder_w, b.arm_r, neck_top, n)
      j[f"{name}_elbow"], j[f"{name}_wrist"] = _two_bone(j[shoulder], hand, b.upper_arm, b.forearm,
                                                         _vec(0.5 * side, 0.3, -1, n))
  return j, normals, fwd, up
