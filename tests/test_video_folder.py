"""The `video_folder` TFDS builder: bad files are all reported before anything is written."""
import json
import os

import numpy as np
import pytest

from imagen_video.data import builders
from imagen_video.data import moving_shapes as ms
from imagen_video.data import video_folder_tfds as vf
from imagen_video.media import video_io as vio

SIZE = dict(frames=8, height=24, width=24, fps=8.0)
BAD = {"corrupt.mp4", "nocap.mp4", "short.mp4", "notes.txt", "gone.mp4"}


def _render(index, frames, height=32, width=32):
  clip = ms.sample_clip(0, "train", index, width / height)
  return clip.caption, ms.render(clip, frames, height, width)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """Good: a.mp4 (12 frames @ 8 fps), b.gif (12 @ 10), c.webm (24 @ 16, 32x48),
  sub/d.mp4; bad: a corrupt mp4, one without caption, one too short, notes.txt,
  and a caption naming a missing file."""
  src = tmp_path_factory.mktemp("src")
  os.makedirs(src / "sub")
  captions = []
  for i, (name, frames, fps, width) in enumerate([("a.mp4", 12, 8, 32), ("b.gif", 12, 10, 32),
                                                 ("c.webm", 24, 16, 48), ("sub/d.mp4", 10, 8, 32),
                                                 ("short.mp4", 4, 8, 32), ("nocap.mp4", 12, 8, 32)]):
    caption, video = _render(i, frames, 32, width)
    vio.write_video(src / name, video, fps)
    if name != "nocap.mp4":
      captions.append({"file": name, "caption": caption})
  (src / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
  captions.append({"file": "corrupt.mp4", "caption": "random bytes"})
  (src / "notes.txt").write_text("not a video")
  captions.append({"file": "gone.mp4", "caption": "a file that is not there"})
  (src / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
  return src


def test_default_run_reports_every_bad_file_and_writes_nothing(source, tmp_path):
  with pytest.raises(vf.BadVideosError) as info:
    builders.prepare("video_folder", tmp_path, source_dir=source, **SIZE)
  message = str(info.value)
  assert isinstance(info.value, ValueError)
  assert {name for name, _ in info.value.bad} == BAD
  for name in BAD:
    assert name in message
  for reason in ("moov atom not found", "no caption", "too short", "unknown extension '.txt'",
                 "no such file"):
    assert reason in message
  for good in ("a.mp4", "b.gif", "c.webm", "sub/d.mp4"):
    assert f"  {good}:" not in message
  builder = builders.get_builder("video_folder", tmp_path, source_dir=source, **SIZE)
  assert not builder.is_prepared()
  config_dir = os.path.dirname(builder.data_dir)
  assert not os.path.isdir(config_dir) or os.listdir(config_dir) == []  # no version, no incomplete.*


def test_skip_bad_builds_the_good_clips(source, tmp_path):
  with pytest.raises(vf.BadVideosError):
    builders.prepare("video_folder", tmp_path, source_dir=source, **SIZE)
  builder = builders.prepare("video_folder", tmp_path, source_dir=source, skip_bad=True, **SIZE)
  assert builder.is_prepared()
  meta = builders.get_builder("video_folder", tmp_path, source_dir=source, **SIZE).info.metadata
  assert meta["num_skipped"] == len(BAD)
  assert {s["file"] for s in meta["skipped"]} == BAD
  ds = builder.as_data_source("train")
  examples = {ds[i]["file"].decode(): ds[i] for i in range(len(ds))}
  assert set(examples) == {"a.mp4", "b.gif", "c.webm", "sub/d.mp4"}
  # Length after resampling to 8 fps: a 12 @ 8 -> 12; b 12 @ 10 (1.2 s) -> 10; c 24 @ 16 -> 12.
  expected = {"a.mp4": 12, "b.gif": 10, "c.webm": 12, "sub/d.mp4": 10}
  for name, ex in examples.items():
    video = np.stack(ex["video"])
    assert video.shape == (expected[name], 24, 24, 3), name
    assert ex["num_frames"] == expected[name]
  assert examples["c.webm"]["source_fps"] == 16
  assert examples["a.mp4"]["caption"].decode() == ms.sample_clip(0, "train", 0).caption


def test_csv_captions_test_files_and_max_frames(tmp_path):
  src = tmp_path / "src"
  os.makedirs(src)
  rows = ["file,caption"]
  for i, name in enumerate(["x.mp4", "y.gif", "z.mp4"]):
    caption, video = _render(i, 16, 24, 24)
    vio.write_video(src / name, video, 8)
    rows.append(f'{name},"{caption}, in a csv"')
  (src / "captions.csv").write_text("\n".join(rows) + "\n")
  builder = builders.prepare("video_folder", tmp_path / "data", source_dir=src, max_frames=10,
                             test_files=("y.gif",), **SIZE)
  assert builder.info.metadata["num_skipped"] == 0
  train, test = builder.as_data_source("train"), builder.as_data_source("test")
  assert len(train) == 2 and len(test) == 1
  assert test[0]["file"] == b"y.gif" and test[0]["caption"].endswith(b", in a csv")
  assert np.stack(train[0]["video"]).shape == (10, 24, 24, 3)  # 16 frames capped at max_frames


def test_resampling_and_cover_crop():
  np.testing.assert_array_equal(vf.resample_indices(24, 24.0, 8.0), [0, 3, 6, 9, 12, 15, 18, 21])
  np.testing.assert_array_equal(vf.resample_indices(4, 4.0, 8.0), [0, 1, 1, 2, 2, 3, 3, 3])
  assert len(vf.resample_indices(12, 10.0, 8.0)) == 10
  frame = np.zeros((40, 80, 3), np.uint8)
  frame[:, 20:60] = 255  # the centre half: what a square crop of the cover-resized frame keeps
  out = vf.resize_cover(frame, 20, 20)
  assert out.shape == (20, 20, 3) and out[:, 2:-2].min() >= 250  # edges: Lanczos ringing only
  assert vf.video_folder_config("/a", **SIZE).name != vf.video_folder_config("/b", **SIZE).name
