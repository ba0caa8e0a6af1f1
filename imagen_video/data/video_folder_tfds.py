"""TFDS builder for a folder of the user's own captioned videos.

    source/
      captions.jsonl        {"file": "a.mp4", "caption": "a dog runs on a beach"} per line
      a.mp4  b.webm  c.gif  clips/d.mov ...    (or captions.csv with header file,caption)

    builders.prepare("video_folder", DATA_DIR, source_dir="source", frames=16, height=64, width=64, fps=8)

Every clip is resampled in time to `fps` (output frame j is the source frame
nearest to time j / fps), resized to cover height x width keeping its aspect,
then centre-cropped, and stored whole (variable length, at most `max_frames`)
with its caption, file name, source fps and length; the input pipeline cuts
`frames`-long windows from it.

Before anything is written, every file is checked (decodable, captioned, long
enough, known suffix; every caption names an existing file). By default one
`BadVideosError` lists all the problems; with `skip_bad=True` the bad files
are left out, logged, and listed in `builder.info.metadata["skipped"]`.
Hidden files and folders (names starting with ".") are ignored.

The config name holds the parameters and a hash of the source folder's
absolute path, not of its contents: after changing the files, delete the
prepared dataset (or move the folder) to rebuild it.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from imagen_video.media import video_io

CAPTION_FILES = ("captions.jsonl", "captions.csv")


class BadVideosError(ValueError):
  """Some files of a video folder cannot be used; `bad` is [(file, reason), ...]."""

  def __init__(self, source_dir: str, bad: list[tuple[str, str]], total: int):
    self.source_dir = source_dir
    self.bad = list(bad)
    lines = "\n".join(f"  {name}: {reason}" for name, reason in self.bad)
    super().__init__(
        f"video_folder {source_dir!r}: {len(self.bad)} problem(s) in {total} file(s) and the captions; "
        f"nothing was written. Fix or remove these files, or pass skip_bad=True to leave them out:\n{lines}")


@dataclasses.dataclass
class VideoFolderConfig(tfds.core.BuilderConfig):
  source_dir: str = ""
  frames: int = 16  # training clip length: what the input pipeline cuts from each stored clip
  height: int = 64
  width: int = 64
  fps: float = 8.0
  min_frames: int = 16
  max_frames: int | None = None
  skip_bad: bool = False
  test_fraction: float = 0.0
  test_files: tuple = ()
  seed: int = 0


def video_folder_config(source_dir, frames=16, height=64, width=64, fps=8.0, min_frames=None,
                        max_frames=None, skip_bad=False, test_fraction=0.0, test_files=(),
                        seed=0) -> VideoFolderConfig:
  """A config named after its parameters and a short hash of the folder's absolute path.

  min_frames: clips with fewer frames after resampling to `fps` are bad (default: `frames`).
  max_frames: keep at most this many frames of each clip (default: all).
  test_fraction / test_files: which good clips form the "test" split (a seeded
    choice of round(fraction * count) clips, or these file names); the rest is "train".
  skip_bad is not in the name: it changes whether preparation may proceed, not
  what a finished dataset holds (the good clips of the folder).
  """
  source_dir = os.path.abspath(os.path.expanduser(os.fspath(source_dir)))
  min_frames = frames if min_frames is None else int(min_frames)
  for field, value in (("frames", frames), ("height", height), ("width", width), ("min_frames", min_frames)):
    if int(value) != value or value < 1:
      raise ValueError(f"video_folder_config: {field} must be a positive integer, got {value!r}")
  if not fps > 0:
    raise ValueError(f"video_folder_config: fps must be positive, got {fps!r}")
  if max_frames is not None and max_frames < max(frames, min_frames):
    raise ValueError(f"video_folder_config: max_frames={max_frames} must be >= frames={frames} "
                     f"and >= min_frames={min_frames}")
  if not 0.0 <= test_fraction < 1.0:
    raise ValueError(f"video_folder_config: test_fraction must be in [0, 1), got {test_fraction!r}")
  if test_fraction and test_files:
    raise ValueError("video_folder_config: give test_fraction or test_files, not both")
  test_files = tuple(sorted(str(f) for f in test_files))
  digest = hashlib.sha256(source_dir.encode()).hexdigest()[:8]
  name = f"{os.path.basename(source_dir) or 'root'}_{digest}"
  name += f"_{frames}x{height}x{width}_fps{fps:g}_min{min_frames}"
  name += f"_max{max_frames}" if max_frames else ""
  if test_files:
    name += "_test" + hashlib.sha256("\n".join(test_files).encode()).hexdigest()[:8]
  elif test_fraction:
    name += f"_test{test_fraction:g}_s{seed}"
  name = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in name)
  return VideoFolderConfig(name=name, source_dir=source_dir, frames=int(frames), height=int(height),
                           width=int(width), fps=float(fps), min_frames=min_frames, max_frames=max_frames,
                           skip_bad=bool(skip_bad), test_fraction=float(test_fraction),
                           test_files=test_files, seed=int(seed),
                           description=f"captioned videos from {source_dir}")


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """Captioned videos from a local folder, resampled to one fps and size."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: variable-length clips with caption, file, source fps."}
  # Examples are written in file-name order; readers index and shuffle themselves.
  disable_shuffling = True

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        "video": tfds.features.Video((None, c.height, c.width, 3), encoding_format="png"),
        "caption": tfds.features.Text(),
        "file": tfds.features.Text(),
        "source_fps": tfds.features.Scalar(dtype=np.float32),
        "num_frames": tfds.features.Scalar(dtype=np.int64),
    }
    metadata = tfds.core.MetadataDict(fps=c.fps, frames=c.frames, source_dir=c.source_dir,
                                      skipped=[], num_skipped=0)
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                          metadata=metadata)

  def _split_generators(self, dl_manager):
    del dl_manager  # local files: nothing to download
    c = self.builder_config
    good, bad, total = validate_folder(c)
    if bad and not c.skip_bad:
      raise BadVideosError(c.source_dir, bad, total)
    if bad:
      logging.warning("video_folder %s: skipping %d bad file(s):\n%s", c.source_dir, len(bad),
                      "\n".join(f"  {n}: {r}" for n, r in bad))
      print(f"video_folder: skipped {len(bad)} bad file(s) of {total}; see builder.info.metadata['skipped']")
    if not good:
      raise BadVideosError(c.source_dir, bad + [(".", "no usable video left")], total)
    # Recorded in metadata.json with the dataset.
    self.info.metadata["skipped"] = [{"file": n, "reason": r} for n, r in bad]
    self.info.metadata["num_skipped"] = len(bad)
    test = _test_files(c, sorted(good))
    train = {f: cap for f, cap in good.items() if f not in test}
    splits = {"train": self._generate_examples(train)}
    if test:
      splits["test"] = self._generate_examples({f: good[f] for f in test})
    return splits

  def _generate_examples(self, captions: dict[str, str]):
    c = self.builder_config
    for name in sorted(captions):
      frames, source_fps = video_io.read_video(os.path.join(c.source_dir, name))
      video = process_clip(frames, source_fps, c)
      yield name, {"video": video, "caption": captions[name], "file": name,
                   "source_fps": source_fps, "num_frames": len(video)}


def resample_indices(num_source: int, source_fps: float, fps: float) -> np.ndarray:
  """Source frame shown at output time j / fps (nearest), for every output frame
  inside the clip's span [0, num_source / source_fps)."""
  count = math.ceil(num_source * fps / source_fps - 1e-9)
  nearest = np.floor(np.arange(count) * source_fps / fps + 0.5).astype(int)
  return np.minimum(nearest, num_source - 1)


def resize_cover(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resize (keeping aspect) so the frame covers height x width, then centre-crop."""
  h0, w0 = frame.shape[:2]
  s = max(height / h0, width / w0)
  rh, rw = max(height, round(h0 * s)), max(width, round(w0 * s))
  image = Image.fromarray(frame)
  if (rh, rw) != (h0, w0):
    image = image.resize((rw, rh), Image.LANCZOS)  # LANCZOS low-passes when shrinking
  top, left = (rh - height) // 2, (rw - width) // 2
  return np.asarray(image)[top:top + height, left:left + width]


def process_clip(frames: np.ndarray, source_fps: float, c: VideoFolderConfig) -> np.ndarray:
  index = resample_indices(len(frames), source_fps, c.fps)
  if c.max_frames:
    index = index[:c.max_frames]
  return np.stack([resize_cover(frames[i], c.height, c.width) for i in index])


def validate_folder(c: VideoFolderConfig) -> tuple[dict[str, str], list[tuple[str, str]], int]:
  """(good {file: caption}, bad [(file, reason)], number of files looked at).

  Decodes every video once (a corrupt file is only found by decoding it);
  the examples are decoded again when written, so memory stays at one clip."""
  if not os.path.isdir(c.source_dir):
    raise FileNotFoundError(f"video_folder: source_dir {c.source_dir!r} is not a directory")
  captions, bad, captions_name = read_captions(c.source_dir)
  files = _list_files(c.source_dir)
  good = {}
  for name in files:
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in video_io.VIDEO_SUFFIXES:
      bad.append((name, f"unknown extension {suffix or '(none)'!r}; expected a video "
                        f"({', '.join(video_io.VIDEO_SUFFIXES)}) or a captions file"))
      continue
    if name not in captions:
      bad.append((name, f"no caption: no entry with \"file\": {name!r} in {captions_name}"))
      continue
    try:
      frames, source_fps = video_io.read_video(os.path.join(c.source_dir, name))
    except video_io.VideoReadError as e:
      bad.append((name, f"unreadable: {e.reason}"))
      continue
    count = len(resample_indices(len(frames), source_fps, c.fps))
    if count < c.min_frames:
      bad.append((name, f"too short: {len(frames)} frames at {source_fps:g} fps "
                        f"({len(frames) / source_fps:.2f} s) give {count} frames at {c.fps:g} fps; "
                        f"expected at least min_frames={c.min_frames}"))
      continue
    good[name] = captions[name]
  present = set(files)
  for name in sorted(set(captions) - present):
    bad.append((name, f"listed in {captions_name}, but no such file in the folder"))
  for name in c.test_files:
    if name not in present:
      bad.append((name, "named in test_files, but no such file in the folder"))
  return good, bad, len(files)


def read_captions(source_dir: str) -> tuple[dict[str, str], list[tuple[str, str]], str]:
  """{file: caption} from captions.jsonl or captions.csv, [(where, problem)], and which file."""
  found = [n for n in CAPTION_FILES if os.path.isfile(os.path.join(source_dir, n))]
  if len(found) != 1:
    raise ValueError(f"video_folder {source_dir!r}: expected exactly one of {CAPTION_FILES}, "
                     f"found {found or 'none'}")
  name = found[0]
  path = os.path.join(source_dir, name)
  entries, bad = [], []  # entries: (line number, file, caption)
  with open(path, newline="", encoding="utf-8") as f:
    if name.endswith(".jsonl"):
      for line_no, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          bad.append((f"{name}:{line_no}", f"not valid JSON ({e.msg}); expected "
                                           '{"file": "...", "caption": "..."}'))
          continue
        entries.append((line_no, row))
    else:
      reader = csv.DictReader(f)
      if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
        raise ValueError(f"{path}: header {reader.fieldnames}; expected the columns file,caption")
      entries = [(reader.line_num, row) for row in reader]
  captions = {}
  for line_no, row in entries:
    where = f"{name}:{line_no}"
    if not isinstance(row, dict) or not isinstance(row.get("file"), str) or not row["file"].strip():
      bad.append((where, 'no "file" field; expected a file name relative to the folder'))
      continue
    file = os.path.normpath(row["file"].strip()).replace(os.sep, "/")
    caption = row.get("caption")
    if not isinstance(caption, str) or not caption.strip():
      bad.append((where, f'{file}: "caption" is missing or empty; expected non-empty text'))
      continue
    if file in captions:
      bad.append((where, f"{file}: captioned twice; the first caption is kept"))
      continue
    captions[file] = caption.strip()
  return captions, bad, name


def _list_files(source_dir: str) -> list[str]:
  """Every non-hidden file under source_dir (relative, '/'-separated) but the captions file."""
  files = []
  for root, dirs, names in os.walk(source_dir):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    rel = os.path.relpath(root, source_dir)
    for n in names:
      if n.startswith("."):
        continue
      path = n if rel == "." else os.path.join(rel, n).replace(os.sep, "/")
      if path not in CAPTION_FILES:
        files.append(path)
  return sorted(files)


def _test_files(c: VideoFolderConfig, names: list[str]) -> set[str]:
  if c.test_files:
    return set(c.test_files) & set(names)
  if not c.test_fraction:
    return set()
  count = round(c.test_fraction * len(names))
  order = np.random.default_rng(c.seed).permutation(len(names))
  return {names[i] for i in order[:count]}
