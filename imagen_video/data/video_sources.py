"""Where a `video_folder` dataset's clips come from, and one clip made into an example.

Two kinds of source, read through `etils.epath` (local paths or gs:// URIs):

  a folder     every non-hidden file under it, captioned by captions.jsonl
               ({"file": "a.mp4", "caption": "..."} per line) or captions.csv (file,caption)
  a manifest   a CSV, JSONL or Parquet table with a video path/URI column and a caption
               column (WebVid's metadata names them contentUrl and name), one row per clip;
               relative paths are relative to the manifest's folder; other columns named in
               `extra_columns` are kept as text features

Listing reports rows and files that cannot be used without decoding anything; `example`
decodes one clip and raises `BadVideo` with the reason when it cannot be used. The single-
process builder and the Beam pipeline call the same two functions, so both keep the same
clips under the same keys.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile

import numpy as np
from etils import epath
from PIL import Image

CAPTION_FILES = ("captions.jsonl", "captions.csv")
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
PATH_COLUMNS = ("file", "path", "video", "contentUrl", "url")  # tried in order when not named
CAPTION_COLUMNS = ("caption", "name", "text")


class BadVideo(ValueError):
  """One clip cannot be used: `reason` says why."""

  def __init__(self, name: str, reason: str):
    super().__init__(f"{name}: {reason}")
    self.name, self.reason = name, reason


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str      # the example key: a path relative to the folder, or the manifest's path/URI
  uri: str       # where the video is read from
  caption: str
  extras: tuple = ()  # ((column, text), ...) kept as features


# -- listing ------------------------------------------------------------------------------
def entries(config, files: list[str] | None = None) -> tuple[list[Entry], list[tuple[str, str]], int]:
  """(usable entries, [(file or row, problem)], number of files or rows looked at) of a
  VideoFolderConfig's source: its `manifest` if set, else its `source_dir` (whose `files`,
  when the caller has listed them already, are not listed again)."""
  if config.manifest:
    return manifest_entries(config.manifest, config.path_column, config.caption_column,
                            config.extra_columns)
  return folder_entries(config.source_dir, files)


def listing(config) -> dict[str, list]:
  """{file: [size, mtime]} of what a VideoFolderConfig's examples come from: every file of
  the folder with its captions file, or the manifest (its rows name the videos)."""
  if config.manifest:
    paths = {config.manifest: epath.Path(config.manifest)}
  else:
    root = epath.Path(config.source_dir)
    names = _list_files(root) + [n for n in CAPTION_FILES if (root / n).is_file()]
    paths = {n: root / n for n in names}
  out = {}
  for name, path in paths.items():
    st = path.stat()
    out[name] = [int(st.length), int(st.mtime)]
  return out


def changes(saved: dict, now: dict) -> str:
  """What differs between two listings, in one line ('' when nothing)."""
  def few(names):
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
  added, removed = set(now) - set(saved), set(saved) - set(now)
  changed = {n for n in set(now) & set(saved) if list(now[n]) != list(saved[n])}
  parts = [f"{len(v)} {what} ({few(v)})" for what, v in
           (("added", added), ("removed", removed), ("changed in size or time", changed)) if v]
  return "; ".join(parts)


def folder_entries(source_dir: str, files: list[str] | None = None
                   ) -> tuple[list[Entry], list[tuple[str, str]], int]:
  from imagen_video.media import video_io
  root = epath.Path(source_dir)
  files = _list_files(root) if files is None else files
  captions, bad, captions_name = read_captions(source_dir)
  out = []
  for name in files:
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in video_io.VIDEO_SUFFIXES:
      bad.append((name, f"unknown extension {suffix or '(none)'!r}; expected a video "
                        f"({', '.join(video_io.VIDEO_SUFFIXES)}) or a captions file"))
    elif name not in captions:
      bad.append((name, f"no caption: no entry with \"file\": {name!r} in {captions_name}"))
    else:
      out.append(Entry(name, str(root / name), captions[name]))
  for name in sorted(set(captions) - set(files)):
    bad.append((name, f"listed in {captions_name}, but no such file in the folder"))
  return out, bad, len(files)


def read_captions(source_dir: str) -> tuple[dict[str, str], list[tuple[str, str]], str]:
  """{file: caption} from captions.jsonl or captions.csv, [(where, problem)], and which file."""
  root = epath.Path(source_dir)
  found = [n for n in CAPTION_FILES if (root / n).is_file()]
  if len(found) != 1:
    raise ValueError(f"video_folder {source_dir!r}: expected exactly one of {CAPTION_FILES}, "
                     f"found {found or 'none'}")
  name = found[0]
  rows, bad = _read_table(root / name, name)
  captions = {}
  for where, row in rows:
    file, caption, problem = _path_and_caption(row, ("file",), ("caption",))
    if problem:
      bad.append((where, problem))
      continue
    file = os.path.normpath(file).replace(os.sep, "/")
    if file in captions:
      bad.append((where, f"{file}: captioned twice; the first caption is kept"))
      continue
    captions[file] = caption
  return captions, bad, name


def manifest_entries(manifest: str, path_column: str = "", caption_column: str = "",
                     extra_columns=()) -> tuple[list[Entry], list[tuple[str, str]], int]:
  path = epath.Path(manifest)
  if not path.is_file():
    raise FileNotFoundError(f"video_folder: manifest {manifest!r} is not a file")
  if path.suffix.lower() not in MANIFEST_SUFFIXES:
    raise ValueError(f"video_folder: manifest {manifest!r}: expected a {', '.join(MANIFEST_SUFFIXES)} file")
  rows, bad = _read_table(path, path.name)
  columns = set().union(*(row.keys() for _, row in rows)) if rows else set()
  paths = (path_column,) if path_column else PATH_COLUMNS
  caps = (caption_column,) if caption_column else CAPTION_COLUMNS
  for want, options in (("path", paths), ("caption", caps)):
    if rows and not columns & set(options):
      raise ValueError(f"video_folder: manifest {manifest!r} has columns {sorted(columns)}; expected a "
                       f"{want} column ({' or '.join(options)}; name it with {want}_column=)")
  missing = sorted(set(extra_columns) - columns)
  if rows and missing:
    raise ValueError(f"video_folder: manifest {manifest!r} has no column(s) {missing} (extra_columns)")
  out, seen = [], set()
  for where, row in rows:
    file, caption, problem = _path_and_caption(row, paths, caps)
    if problem:
      bad.append((where, problem))
      continue
    if file in seen:
      bad.append((where, f"{file}: listed twice; the first row is kept"))
      continue
    seen.add(file)
    uri = file if "://" in file or file.startswith("/") else str(path.parent / file)
    extras = tuple((c, "" if row.get(c) is None else str(row.get(c))) for c in extra_columns)
    out.append(Entry(file, uri, caption, extras))
  return out, bad, len(rows)


def _path_and_caption(row, paths, captions) -> tuple[str, str, str | None]:
  file = next((row[c] for c in paths if isinstance(row.get(c), str) and row[c].strip()), None)
  if file is None:
    return "", "", f"no {'/'.join(paths)} field; expected a video path or URI"
  caption = next((row[c] for c in captions if c in row), None)
  if not isinstance(caption, str) or not caption.strip():
    return "", "", f"{file.strip()}: {'/'.join(captions)} is missing or empty; expected non-empty text"
  return file.strip(), caption.strip(), None


def _read_table(path: epath.Path, name: str) -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
  """[(where, row dict)] of a CSV, JSONL or Parquet file, and [(where, problem)] of bad rows."""
  suffix = path.suffix.lower()
  rows, bad = [], []
  if suffix == ".parquet":
    import pyarrow.parquet as pq
    table = pq.read_table(io.BytesIO(path.read_bytes()))
    return [(f"{name}:row {i + 1}", r) for i, r in enumerate(table.to_pylist())], bad
  text = path.read_text(encoding="utf-8")
  if suffix in (".jsonl", ".json"):
    for line_no, line in enumerate(text.splitlines(), 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        bad.append((f"{name}:{line_no}", f"not valid JSON ({e.msg}); expected one object per line"))
        continue
      if not isinstance(row, dict):
        bad.append((f"{name}:{line_no}", "not a JSON object; expected one object per line"))
        continue
      rows.append((f"{name}:{line_no}", row))
    return rows, bad
  reader = csv.DictReader(io.StringIO(text, newline=""))
  if not reader.fieldnames:
    raise ValueError(f"{path}: no header row; expected column names (e.g. file,caption)")
  return [(f"{name}:{reader.line_num}", row) for row in reader], bad


def _list_files(root: epath.Path) -> list[str]:
  """Every non-hidden file under root (relative, '/'-separated) but the captions file."""
  if not root.is_dir():
    raise FileNotFoundError(f"video_folder: source_dir {str(root)!r} is not a directory")
  files = []
  for dirpath, dirs, names in root.walk():
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    rel = os.path.relpath(os.fspath(dirpath), os.fspath(root))
    for n in names:
      if n.startswith("."):
        continue
      path = n if rel == "." else f"{rel}/{n}".replace(os.sep, "/")
      if path not in CAPTION_FILES:
        files.append(path)
  return sorted(files)


# -- one clip --------------------------------------------------------------------------------
def read(uri: str):
  """(frames uint8 [T, H, W, 3], fps) of a local or remote video; BadVideo if unreadable."""
  from imagen_video.media import video_io
  path = epath.Path(uri)
  try:
    if "://" not in uri:
      return video_io.read_video(uri)
    with tempfile.NamedTemporaryFile(suffix=path.suffix) as f:  # the decoder wants a file
      f.write(path.read_bytes())
      f.flush()
      return video_io.read_video(f.name)
  except video_io.VideoReadError as e:
    raise BadVideo(uri, f"unreadable: {e.reason}") from None
  except (FileNotFoundError, OSError) as e:
    raise BadVideo(uri, f"unreadable: {type(e).__name__}: {e}") from None


def example(entry: Entry, config) -> dict:
  """The stored example of one entry: frames resampled to the config's fps, cover-resized and
  centre-cropped, encoded as PNG or JPEG; BadVideo if it cannot be read or is too short."""
  try:
    frames, source_fps = read(entry.uri)
  except BadVideo:
    try:  # once more: a decoder subprocess can fail for reasons of the moment on a busy worker
      frames, source_fps = read(entry.uri)
    except BadVideo as e:
      raise BadVideo(entry.name, e.reason) from None
  count = len(resample_indices(len(frames), source_fps, config.fps))
  if count < config.min_frames:
    raise BadVideo(entry.name, f"too short: {len(frames)} frames at {source_fps:g} fps "
                               f"({len(frames) / source_fps:.2f} s) give {count} frames at "
                               f"{config.fps:g} fps; expected at least min_frames={config.min_frames}")
  video = process_clip(frames, source_fps, config)
  out = {"video": [encode(f, config.image_format, config.jpeg_quality) for f in video],
         "caption": entry.caption, "file": entry.name, "source_fps": source_fps,
         "num_frames": len(video)}
  out.update({f"extra_{k}": v for k, v in entry.extras})
  return out


def encode(frame: np.ndarray, image_format: str, quality: int) -> bytes:
  """One frame as PNG or JPEG bytes (stored as is: TFDS keeps encoded frames)."""
  buf = io.BytesIO()
  if image_format == "jpeg":
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
  else:
    Image.fromarray(frame).save(buf, format="PNG")
  return buf.getvalue()


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


def process_clip(frames: np.ndarray, source_fps: float, c) -> np.ndarray:
  index = resample_indices(len(frames), source_fps, c.fps)
  if c.max_frames:
    index = index[:c.max_frames]
  return np.stack([resize_cover(frames[i], c.height, c.width) for i in index])
