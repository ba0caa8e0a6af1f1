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

Instead of a folder, `manifest=PATH` names a CSV, JSONL or Parquet table of video
paths/URIs (local or gs://) and captions (`data/video_sources.py`). Frames are stored
encoded, `image_format` png (lossless) or jpeg at `jpeg_quality`.

Single process (default): before anything is written, every file is checked (decodable,
captioned, long enough, known suffix; every caption names an existing file). By default
one `BadVideosError` lists all the problems; with `skip_bad=True` the bad files are left
out, logged, and listed in `builder.info.metadata["skipped"]`.
On Apache Beam (`builders.prepare(..., beam_options=...)`, `imagen-video prepare
--beam_pipeline_options`): each worker decodes its share of the clips; problems found
without decoding (no caption, unknown extension, a bad manifest row) stop the run before
the pipeline starts, and clips that fail to decode go to a side output,
`bad_files-SPLIT.tsv` beside the dataset; without `skip_bad` the finished dataset is then
removed and the error lists them. Both paths write the same examples under the same keys.
Hidden files and folders (names starting with ".") are ignored. The test split is chosen
per clip by a hash of (seed, name), so it needs no view of the whole source.

The config name holds the parameters and a hash of the source folder's (or manifest's)
path, not of its contents. The files it was built from (names, sizes, mtimes; the captions
file or manifest among them) are listed in `source_listing.json` beside the dataset;
`builders.prepare` (so `imagen-video prepare` and training) stops on a dataset whose source
has changed, saying what changed, until it is rebuilt (`imagen-video prepare --rebuild`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from imagen_video.data import remote_shards, video_sources
from imagen_video.data.video_sources import process_clip, resample_indices, resize_cover  # noqa: F401

CAPTION_FILES = video_sources.CAPTION_FILES
remote_shards.install()  # on import: Beam workers that unpickle this builder's transforms too
IMAGE_FORMATS = ("png", "jpeg")
SOURCE_LISTING = "source_listing.json"  # {file: [size, mtime]} the dataset was built from


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
  manifest: str = ""
  path_column: str = ""
  caption_column: str = ""
  extra_columns: tuple = ()
  image_format: str = "png"
  jpeg_quality: int = 95


def video_folder_config(source_dir="", frames=16, height=64, width=64, fps=8.0, min_frames=None,
                        max_frames=None, skip_bad=False, test_fraction=0.0, test_files=(),
                        seed=0, manifest="", path_column="", caption_column="", extra_columns=(),
                        image_format="png", jpeg_quality=95) -> VideoFolderConfig:
  """A config named after its parameters and a short hash of the folder's absolute path.

  min_frames: clips with fewer frames after resampling to `fps` are bad (default: `frames`).
  max_frames: keep at most this many frames of each clip (default: all).
  test_fraction / test_files: which good clips form the "test" split (a seeded
    choice of round(fraction * count) clips, or these file names); the rest is "train".
  manifest: a CSV/JSONL/Parquet table instead of a folder (path_column, caption_column:
    its columns when not the usual names; extra_columns: more columns kept as features).
  image_format, jpeg_quality: how frames are stored.
  skip_bad is not in the name: it changes whether preparation may proceed, not
  what a finished dataset holds (the good clips of the folder).
  """
  if bool(source_dir) == bool(manifest):
    raise ValueError("video_folder_config: give source_dir (a folder) or manifest (a table), not both")
  source = os.fspath(manifest or source_dir)
  if "://" not in source:
    source = os.path.abspath(os.path.expanduser(source))
  if image_format not in IMAGE_FORMATS:
    raise ValueError(f"video_folder_config: image_format={image_format!r}; expected one of {IMAGE_FORMATS}")
  if not 1 <= int(jpeg_quality) <= 100:
    raise ValueError(f"video_folder_config: jpeg_quality={jpeg_quality!r}; expected 1..100")
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
  extra_columns = tuple(str(c) for c in extra_columns)
  digest = hashlib.sha256("|".join((source, path_column, caption_column, *extra_columns)).encode()
                          ).hexdigest()[:8]
  name = f"{os.path.basename(source.rstrip('/')) or 'root'}_{digest}"
  name += f"_{frames}x{height}x{width}_fps{fps:g}_min{min_frames}"
  name += f"_jpeg{int(jpeg_quality)}" if image_format == "jpeg" else ""
  name += f"_max{max_frames}" if max_frames else ""
  if test_files:
    name += "_test" + hashlib.sha256("\n".join(test_files).encode()).hexdigest()[:8]
  elif test_fraction:
    name += f"_test{test_fraction:g}_s{seed}"
  name = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in name)
  return VideoFolderConfig(name=name, source_dir=source if not manifest else "", frames=int(frames),
                           height=int(height), width=int(width), fps=float(fps), min_frames=min_frames,
                           max_frames=max_frames, skip_bad=bool(skip_bad),
                           test_fraction=float(test_fraction), test_files=test_files, seed=int(seed),
                           manifest=source if manifest else "", path_column=str(path_column),
                           caption_column=str(caption_column), extra_columns=extra_columns,
                           image_format=image_format, jpeg_quality=int(jpeg_quality),
                           description=f"captioned videos from {source}")


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """Captioned videos from a folder or a manifest, resampled to one fps and size."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: variable-length clips with caption, file, source fps."}
  # Examples are written in key order; readers index and shuffle themselves.
  disable_shuffling = True
  beam_options = None  # set by `builders.prepare` to build on Apache Beam

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        "video": tfds.features.Video((None, c.height, c.width, 3), encoding_format=c.image_format),
        "caption": tfds.features.Text(),
        "file": tfds.features.Text(),
        "source_fps": tfds.features.Scalar(dtype=np.float32),
        "num_frames": tfds.features.Scalar(dtype=np.int64),
        **{f"extra_{col}": tfds.features.Text() for col in c.extra_columns},
    }
    metadata = tfds.core.MetadataDict(fps=c.fps, frames=c.frames, source_dir=c.source_dir,
                                      manifest=c.manifest, skipped=[], num_skipped=0)
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                          metadata=metadata)

  def _split_generators(self, dl_manager):
    del dl_manager  # local or gs:// files: nothing to download
    c = self.builder_config
    source = video_sources.listing(c)  # before reading: a file changed meanwhile shows later
    listed = None if c.manifest else sorted(set(source) - set(CAPTION_FILES))  # walked once
    entries, bad, total = video_sources.entries(c, listed)
    target = epath.Path(os.fspath(self.data_dir))
    target.mkdir(parents=True, exist_ok=True)
    (target / SOURCE_LISTING).write_text(json.dumps(source))
    missing = [n for n in c.test_files if n not in {e.name for e in entries} | {b for b, _ in bad}]
    bad += [(n, "named in test_files, but no such file in the folder") for n in missing]
    if self.beam_options is not None:
      if bad and not c.skip_bad:  # found without decoding: stop before the pipeline starts
        raise BadVideosError(_source(c), bad, total)
      self._record_skipped(bad)
      return {split: self._beam_examples(part, split)
              for split, part in _splits(c, entries).items() if part}
    good = []
    for entry in entries:  # decode each once now (a corrupt file is only found so) ...
      try:
        video_sources.example(entry, c)
        good.append(entry)
      except video_sources.BadVideo as e:
        bad.append((e.name, e.reason))
    if bad and not c.skip_bad:
      raise BadVideosError(_source(c), bad, total)
    if bad:
      logging.warning("video_folder %s: skipping %d bad file(s):\n%s", _source(c), len(bad),
                      "\n".join(f"  {n}: {r}" for n, r in bad))
      print(f"video_folder: skipped {len(bad)} bad file(s) of {total}; see builder.info.metadata['skipped']")
    if not good:
      raise BadVideosError(_source(c), bad + [(".", "no usable video left")], total)
    self._record_skipped(bad)
    return {split: self._generate_examples(part) for split, part in _splits(c, good).items() if part}

  def source_changes(self) -> str:
    """How the source differs from what this prepared dataset was built from ('' if not,
    or if it was prepared before sources were recorded)."""
    saved = epath.Path(os.fspath(self.data_dir)) / SOURCE_LISTING
    if not saved.exists():
      return ""
    return video_sources.changes(json.loads(saved.read_text()), video_sources.listing(self.builder_config))

  def after_beam(self) -> None:
    """After a Beam build: clips that failed to decode are listed; without skip_bad the
    dataset is removed again and the error names them (nothing half-usable is left)."""
    c = self.builder_config
    bad = bad_files(self.data_dir)
    if not bad:
      return
    if not c.skip_bad:
      epath.Path(os.fspath(self.data_dir)).rmtree()
      raise BadVideosError(_source(c), bad, len(bad))
    print(f"video_folder: skipped {len(bad)} clip(s) that failed to decode (listed in "
          f"{self.data_dir}/bad_files-*.tsv):\n" + "\n".join(f"  {n}: {r}" for n, r in bad))

  def _record_skipped(self, bad):
    # Recorded in metadata.json with the dataset.
    self.info.metadata["skipped"] = [{"file": n, "reason": r} for n, r in bad]
    self.info.metadata["num_skipped"] = len(bad)

  def _generate_examples(self, entries):
    for entry in entries:  # ... and again when written, so memory stays at one clip
      yield entry.name, video_sources.example(entry, self.builder_config)

  def _beam_examples(self, entries, split: str):
    """The split as a Beam transform: workers decode their share; clips that fail go to the
    side output bad_files-SPLIT.tsv (written beside the dataset)."""
    import apache_beam as beam
    c, bad_path = self.builder_config, os.path.join(os.fspath(self.data_dir), f"bad_files-{split}")

    def make(entry):
      try:
        yield entry.name, video_sources.example(entry, c)
      except video_sources.BadVideo as e:
        yield beam.pvalue.TaggedOutput("bad", f"{e.name}\t{e.reason}")

    @beam.ptransform_fn
    def examples(root):
      outs = (root | f"List{split}" >> beam.Create(entries) | f"Spread{split}" >> beam.Reshuffle()
              | f"Decode{split}" >> beam.FlatMap(make).with_outputs("bad", main="good"))
      _ = outs.bad | f"Bad{split}" >> beam.io.WriteToText(bad_path, file_name_suffix=".tsv", num_shards=1,
                                                        shard_name_template="")
      return outs.good
    return examples()


def _source(c) -> str:
  return c.manifest or c.source_dir


def _splits(c, entries) -> dict:
  test = {e.name for e in entries if in_test(c, e.name)}
  return {"train": [e for e in entries if e.name not in test],
          "test": [e for e in entries if e.name in test]}


def in_test(c, name: str) -> bool:
  """Whether a clip is in the test split: named in test_files, or a hash of (seed, name)
  below test_fraction (the same answer on any worker, for any number of clips)."""
  if c.test_files:
    return name in c.test_files
  if not c.test_fraction:
    return False
  h = int.from_bytes(hashlib.sha256(f"{c.seed}:{name}".encode()).digest()[:8], "big")
  return h / 2 ** 64 < c.test_fraction


def bad_files(data_dir) -> list[tuple[str, str]]:
  """[(file, reason)] a Beam build left out (its side outputs in `data_dir`)."""
  out = []
  for path in sorted(epath.Path(os.fspath(data_dir)).glob("bad_files-*.tsv")):
    out += [tuple(line.split("\t", 1)) for line in path.read_text().splitlines() if line.strip()]
  return out
