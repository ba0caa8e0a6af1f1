"""Pose sequences from the files users have: COCO keypoint JSON, OpenPose per-frame JSON.

    poses = load("poses.json")                            # COCO: {"images": [...], "annotations": [...]}
    poses = load("openpose_out/", width=1280, height=720) # a folder of *_keypoints.json
    poses.keypoints, poses.visibility                     # [T, 17, 2] in [0, 1], [T, 17] in {0, 1}

COCO: one frame per image, ordered by image id (or by the number in `file_name`,
order_by="file_name"); the frame size from each image's width/height. The first
annotation of an image is its person. A plain list of annotations (no "images")
needs width= and height=; frames are then numbered by image_id.
OpenPose: one file per frame, numbered by the digits before `_keypoints.json`;
`people[0].pose_keypoints_2d` in the BODY_25 (75 numbers) or COCO-18 (54) layout,
mapped to COCO-17. OpenPose files do not record the frame size: pass width= and
height=, or add `canvas_width`/`canvas_height` (as pose editors write them).

Frames must be consecutive, each with a person, and every labelled point inside
the frame (up to `tolerance`, a fraction of its size; what is within is clipped).
A violation raises PoseFileError naming the file, the frame (counted from 0 in
the sequence, with its image id / file name) and the field. With
interpolate_missing=True, missing frames (gaps, images without an annotation,
files without people) are filled from their nearest neighbours instead.
"""
from __future__ import annotations

import itertools
import json
import os
import re
from typing import NamedTuple

import numpy as np

from imagen_video.media.video_io import atomic_path
from imagen_video.pose.skeleton import INDEX, KEYPOINTS, LIMBS, NUM_KEYPOINTS

TOLERANCE = 0.02
BODY_25 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
           "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle",
           "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
           "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
COCO_18 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
           "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
           "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
# numbers per person -> (layout name, index of each COCO-17 keypoint in it)
OPENPOSE_LAYOUTS = {3 * len(names): (label, np.array([names.index(k) for k in KEYPOINTS]))
                    for label, names in (("BODY_25", BODY_25), ("COCO-18", COCO_18))}
_OPENPOSE_FIELD = "'people[0].pose_keypoints_2d'"
_FILL_HINT = "pass interpolate_missing=True to fill missing frames from their neighbours"


class PoseFileError(ValueError):
  """A pose file that cannot be used, with where and why."""


class Poses(NamedTuple):
  keypoints: np.ndarray  # float32 [T, 17, 2]: (x / width, y / height)
  visibility: np.ndarray  # float32 [T, 17]: 1 where the point is labelled


class _Frame(NamedTuple):
  number: int  # frame number in the source (image id, file number)
  where: str  # how messages name its origin, e.g. "image_id 4"
  points: np.ndarray | None  # [17, 3] (x px, y px, labelled) or None: no person
  size: tuple | None  # (width, height) in pixels
  missing: str = ""  # why `points` is None


def load(path, **kwargs) -> Poses:
  """A COCO file, an OpenPose folder, or one OpenPose file (see `load_coco`, `load_openpose`)."""
  if os.path.isdir(path):
    return load_openpose(path, **kwargs)
  data = _read_json(path)
  if isinstance(data, dict) and "people" in data:
    return load_openpose(path, **kwargs)
  return load_coco(path, **kwargs, _data=data)


def _read_json(path):
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise PoseFileError(f"{path}: no such file")
  if os.path.getsize(path) == 0:
    raise PoseFileError(f"{path}: the file is empty (0 bytes); expected JSON")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise PoseFileError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
  except UnicodeDecodeError as e:
    raise PoseFileError(f"{path}: not valid JSON: not UTF-8 text") from e


def _numbers(values, where: str, field: str, expected: str) -> np.ndarray:
  if not isinstance(values, list):
    raise PoseFileError(f"{where}: {field} is {type(values).__name__}; expected a list of {expected}")
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
    raise PoseFileError(f"{where}: {field} holds values that are not numbers; expected {expected}")
  return np.asarray(values, np.float64)


def load_coco(path, *, width=None, height=None, order_by: str = "id", tolerance: float = TOLERANCE,
              interpolate_missing: bool = False, _data=None) -> Poses:
  """COCO keypoint JSON -> Poses (see the module docstring)."""
  path = os.fspath(path)
  data = _read_json(path) if _data is None else _data
  if order_by not in ("id", "file_name"):
    raise ValueError(f"order_by {order_by!r}: expected 'id' or 'file_name'")
  if isinstance(data, list):
    data = {"annotations": data}
  if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
    raise PoseFileError(f"{path}: expected COCO keypoint JSON: an object with an 'annotations' list "
                        f"(and 'images'), or a list of annotations")
  if not data["annotations"]:
    raise PoseFileError(f"{path}: 'annotations' is empty; expected one person per frame")
  # The first annotation of each image is its person.
  person = {}
  for k, ann in enumerate(data["annotations"]):
    if not isinstance(ann, dict) or "image_id" not in ann or "keypoints" not in ann:
      raise PoseFileError(f"annotation {k} of {path}: expected an object with 'image_id' and 'keypoints'")
    person.setdefault(ann["image_id"], ann)
  images = data.get("images")
  if images is None:
    if width is None or height is None:
      raise PoseFileError(f"{path}: no 'images' list to take the frame size from; pass width= and height=")
    if order_by != "id":
      raise PoseFileError(f"{path}: order_by='file_name' needs an 'images' list with file names")
    images = [{"id": i} for i in person]
  if not isinstance(images, list) or not images:
    raise PoseFileError(f"{path}: 'images' must be a non-empty list of image objects")
  known = {img.get("id") for img in images if isinstance(img, dict)}
  for image_id in person:
    if image_id not in known:
      raise PoseFileError(f"{path}: an annotation has image_id {image_id!r}, which is not in 'images'")

  frames = []
  for img in images:
    if not isinstance(img, dict) or "id" not in img:
      raise PoseFileError(f"{path}: every entry of 'images' needs an 'id'; got {img!r:.80}")
    name = img.get("file_name")
    where = f"image_id {img['id']}" + (f", file_name {name!r}" if name else "")
    number = _frame_number(path, img, order_by, where)
    w, h = img.get("width", width), img.get("height", height)
    if w is None or h is None:
      raise PoseFileError(f"{path}: {where} has no 'width'/'height' and none was given; "
                          f"pass width= and height=")
    ann = person.get(img["id"])
    if ann is None:
      frames.append(_Frame(number, where, None, (w, h), "no annotation has this image_id"))
      continue
    frames.append(_Frame(number, where, ann["keypoints"], (w, h)))
  return _assemble(path, frames, tolerance, interpolate_missing, _coco_points)


def _frame_number(path, img, order_by, where) -> int:
  if order_by == "id":
    if not isinstance(img["id"], int):
      raise PoseFileError(f"{path}: {where}: image ids must be integers to order frames by; "
                          f"use order_by='file_name'")
    return img["id"]
  digits = re.findall(r"\d+", str(img.get("file_name", "")))
  if not digits:
    raise PoseFileError(f"{path}: {where}: no frame number in 'file_name'; use order_by='id'")
  return int(digits[-1])


def _coco_points(values, where) -> np.ndarray:
  expected = f"{3 * NUM_KEYPOINTS} ({NUM_KEYPOINTS} joints x (x, y, v))"
  v = _numbers(values, where, "'keypoints'", expected)
  if len(v) != 3 * NUM_KEYPOINTS:
    raise PoseFileError(f"{where}: 'keypoints' has {len(v)} numbers; expected {expected}")
  p = v.reshape(NUM_KEYPOINTS, 3)
  bad = [i for i, flag in enumerate(p[:, 2]) if flag not in (0, 1, 2)]
  if bad:
    raise PoseFileError(f"{where}: 'keypoints' visibility flag of {KEYPOINTS[bad[0]]!r} is "
                        f"{p[bad[0], 2]:g}; expected 0 (not labelled), 1 (occluded) or 2 (visible)")
  p[:, 2] = p[:, 2] > 0  # occluded points are labelled: their position is known
  return p


def load_openpose(path, *, width=None, height=None, tolerance: float = TOLERANCE,
                  interpolate_missing: bool = False, min_confidence: float = 0.0) -> Poses:
  """A folder of OpenPose `*_keypoints.json` files (or one such file) -> Poses;
  points with confidence <= `min_confidence` count as not labelled."""
  path = os.fspath(path)
  if os.path.isdir(path):
    names = sorted(n for n in os.listdir(path) if n.endswith("_keypoints.json"))
    if not names:
      raise PoseFileError(f"{path}: no OpenPose files (*_keypoints.json) in this folder")
    files = [os.path.join(path, n) for n in names]
  else:
    files = [path]
  numbered = {}
  for f in files:
    m = re.search(r"(\d+)_keypoints\.json$", os.path.basename(f))
    number = int(m.group(1)) if m else 0
    if len(files) > 1 and not m:
      raise PoseFileError(f"{f}: no frame number before '_keypoints.json'")
    if number in numbered:
      raise PoseFileError(f"{path}: {os.path.basename(numbered[number])} and {os.path.basename(f)} "
                          f"are both frame {number}")
    numbered[number] = f

  frames = []
  for number, f in sorted(numbered.items()):
    data = _read_json(f)
    where = os.path.basename(f)
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
      raise PoseFileError(f"{f}: expected an OpenPose object with a 'people' list")
    size = (data.get("canvas_width", width), data.get("canvas_height", height))
    if None in size:
      raise PoseFileError(f"{f}: the frame size is unknown (OpenPose JSON does not record it); "
                          f"pass width= and height= (the video's size in pixels)")
    if not data["people"]:
      frames.append(_Frame(number, where, None, size, "'people' is empty; expected one person"))
      continue
    first = data["people"][0]
    if not isinstance(first, dict) or "pose_keypoints_2d" not in first:
      raise PoseFileError(f"{f}: people[0] has no 'pose_keypoints_2d'")
    frames.append(_Frame(number, where, first["pose_keypoints_2d"], size))
  return _assemble(path, frames, tolerance, interpolate_missing,
                   lambda values, where: _openpose_points(values, where, min_confidence))


def _openpose_points(values, where, min_confidence) -> np.ndarray:
  expected = " or ".join(f"{n} ({label}: {n // 3} joints x (x, y, c))" for n, (label, _) in OPENPOSE_LAYOUTS.items())
  v = _numbers(values, where, _OPENPOSE_FIELD, expected)
  if len(v) not in OPENPOSE_LAYOUTS:
    raise PoseFileError(f"{where}: {_OPENPOSE_FIELD} has {len(v)} numbers; expected {expected}")
  p = v.reshape(-1, 3)[OPENPOSE_LAYOUTS[len(v)][1]]
  p[:, 2] = p[:, 2] > min_confidence
  return p


def _assemble(path, frames: list[_Frame], tolerance, interpolate, parse) -> Poses:
  """Checks numbering, parses and range-checks each frame, fills gaps when asked."""
  frames = sorted(frames, key=lambda fr: fr.number)
  for a, b in itertools.pairwise(frames):
    if a.number == b.number:
      raise PoseFileError(f"{path}: {a.where} and {b.where} are both frame {a.number}")
  first = frames[0].number
  gaps = [(a, b) for a, b in itertools.pairwise(frames) if b.number > a.number + 1]
  if gaps and not interpolate:
    a, b = gaps[0]
    lo, hi = a.number - first + 1, b.number - first - 1
    missing = f"frames {lo} to {hi} are" if hi > lo else f"frame {lo} is"
    raise PoseFileError(f"{path}: a gap in the frame numbering between {a.where} and {b.where}: "
                        f"{missing} missing (frames count from 0); {_FILL_HINT}")
  count = frames[-1].number - first + 1
  keypoints = np.zeros((count, NUM_KEYPOINTS, 2), np.float32)
  visibility = np.zeros((count, NUM_KEYPOINTS), np.float32)
  present = np.zeros(count, bool)
  for fr in frames:
    i = fr.number - first
    where = f"frame {i} of {path} ({fr.where})"
    if fr.points is None:
      if not interpolate:
        raise PoseFileError(f"{where}: {fr.missing}; {_FILL_HINT}")
      continue
    p = parse(fr.points, where)
    if not p[:, 2].any():  # a person with no labelled point is no person
      if not interpolate:
        raise PoseFileError(f"{where}: the person has no labelled keypoints; {_FILL_HINT}")
      continue
    w, h = (float(s) for s in fr.size)
    if not (w > 0 and h > 0):
      raise PoseFileError(f"{where}: the frame size {fr.size[0]}x{fr.size[1]} is not positive")
    xy = p[:, :2] / np.array([w, h])
    out = p[:, 2].astype(bool) & ((xy < -tolerance) | (xy > 1 + tolerance)).any(-1)
    if out.any():
      j = int(np.flatnonzero(out)[0])
      raise PoseFileError(f"{where}: joint {KEYPOINTS[j]!r} at (x, y) = ({p[j, 0]:g}, {p[j, 1]:g}) is outside "
                          f"the {w:g}x{h:g} frame (by more than {tolerance:.0%} of its size)")
    keypoints[i] = np.where(p[:, 2:] > 0, np.clip(xy, 0.0, 1.0), 0.0)
    visibility[i] = p[:, 2]
    present[i] = True
  if not present.any():
    raise PoseFileError(f"{path}: no frame has a person")
  return _fill(keypoints, visibility, present)


def _fill(keypoints, visibility, present) -> Poses:
  """Missing frames interpolated linearly between the nearest present ones (a joint
  is labelled if both ends label it); missing frames at either end copy the nearest."""
  idx = np.flatnonzero(present)
  for i in np.flatnonzero(~present):
    after = idx[np.searchsorted(idx, i):]
    before = idx[:np.searchsorted(idx, i)]
    a = before[-1] if len(before) else after[0]
    b = after[0] if len(after) else before[-1]
    w = 0.0 if a == b else (i - a) / (b - a)
    both = (visibility[a] > 0) & (visibility[b] > 0)
    keypoints[i] = np.where(both[:, None], (1 - w) * keypoints[a] + w * keypoints[b], 0.0)
    visibility[i] = both
  return Poses(keypoints, visibility)


def _pixels(keypoints, visibility, width, height) -> tuple[np.ndarray, np.ndarray]:
  k = np.asarray(keypoints, np.float64) * np.array([width, height])
  v = np.asarray(visibility) > 0
  return np.where(v[..., None], k, 0.0), v


def write_coco(path, keypoints, visibility, width: int, height: int) -> str:
  """One person per frame as COCO keypoint JSON (images `frame_{i:06d}.png`, ids from 1);
  unlabelled points are written as (0, 0, 0)."""
  k, v = _pixels(keypoints, visibility, width, height)
  images, annotations = [], []
  for i, (p, s) in enumerate(zip(k, v)):
    images.append({"id": i + 1, "file_name": f"frame_{i:06d}.png", "width": width, "height": height})
    flat = [float(c) for x, y, seen in zip(p[:, 0], p[:, 1], s) for c in (x, y, 2 * seen)]
    lo, hi = (p[s].min(0), p[s].max(0)) if s.any() else (np.zeros(2), np.zeros(2))
    annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                        "keypoints": flat, "num_keypoints": int(s.sum()),
                        "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                        "area": float(np.prod(hi - lo))})
  category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(KEYPOINTS),
              "skeleton": [[a + 1, b + 1] for a, b in LIMBS]}
  data = {"images": images, "annotations": annotations, "categories": [category]}
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(data, f)
  return os.fspath(path)


def write_openpose(folder, keypoints, visibility, width: int, height: int, *, layout: str = "BODY_25",
                   prefix: str = "frame", canvas: bool = True) -> list[str]:
  """One `{prefix}_{i:012d}_keypoints.json` per frame, as OpenPose writes them, in the
  BODY_25 or COCO-18 layout (neck and mid-hip: midpoints; feet: not labelled);
  `canvas` adds canvas_width/canvas_height so the files carry their frame size."""
  names = {"BODY_25": BODY_25, "COCO-18": COCO_18}.get(layout)
  if names is None:
    raise ValueError(f"layout {layout!r}: expected 'BODY_25' or 'COCO-18'")
  k, v = _pixels(keypoints, visibility, width, height)
  os.makedirs(folder, exist_ok=True)
  paths = []
  for i, (p, s) in enumerate(zip(k, v)):
    points = {name: (p[j], s[j]) for j, name in enumerate(KEYPOINTS)}
    for mid, (a, b) in (("neck", ("left_shoulder", "right_shoulder")), ("mid_hip", ("left_hip", "right_hip"))):
      seen = bool(s[INDEX[a]] and s[INDEX[b]])
      points[mid] = ((p[INDEX[a]] + p[INDEX[b]]) / 2 if seen else np.zeros(2), seen)
    flat = []
    for name in names:
      xy, seen = points.get(name, (np.zeros(2), False))
      flat += [float(xy[0]), float(xy[1]), 1.0 if seen else 0.0]
    data = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": flat,
                                        "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
                                        "hand_right_keypoints_2d": []}]}
    if canvas:
      data.update(canvas_width=width, canvas_height=height)
    path = os.path.join(folder, f"{prefix}_{i:012d}_keypoints.json")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
      json.dump(data, f)
    paths.append(path)
  return paths
