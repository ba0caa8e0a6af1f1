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


BEAM = "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"


def _examples(builder) -> dict:
  out = {}
  for split in builder.info.splits:
    ds = builder.as_data_source(split)
    for i in range(len(ds)):
      ex = ds[i]
      out[(split, ex["file"].decode())] = (ex["caption"].decode(), np.stack(ex["video"]))
  return out


@pytest.mark.slow
def test_beam_direct_runner_with_two_worker_processes_writes_the_same_examples(source, tmp_path, capsys):
  import time
  t0 = time.time()
  one = builders.prepare("video_folder", tmp_path / "one", source_dir=source, skip_bad=True,
                         test_fraction=0.5, **SIZE)
  t1 = time.time()
  beam = builders.prepare("video_folder", tmp_path / "beam", source_dir=source, skip_bad=True,
                          test_fraction=0.5, beam_options=BEAM, **SIZE)
  t2 = time.time()
  print(f"single process {t1 - t0:.1f} s, Beam DirectRunner x2 processes {t2 - t1:.1f} s")
  a, b = _examples(one), _examples(beam)
  assert set(a) == set(b) == {(vf.in_test(beam.builder_config, n) and "test" or "train", n)
                              for n in ("a.mp4", "b.gif", "c.webm", "sub/d.mp4")}
  assert {split for split, _ in a} == {"train", "test"}  # the hash split has both here
  for key in a:
    assert a[key][0] == b[key][0] and np.array_equal(a[key][1], b[key][1]), key
  # found without decoding: in the metadata; failed to decode: in the side output, named
  listed = {s["file"] for s in beam.info.metadata["skipped"]}
  assert listed == {"nocap.mp4", "notes.txt", "gone.mp4"}
  decoded = dict(vf.bad_files(beam.data_dir))
  assert set(decoded) == {"corrupt.mp4", "short.mp4"}
  assert "moov atom not found" in decoded["corrupt.mp4"] and "too short" in decoded["short.mp4"]
  assert "skipped 2 clip(s) that failed to decode" in capsys.readouterr().out


@pytest.mark.slow
def test_beam_without_skip_bad_stops_early_or_removes_what_it_built(source, tmp_path):
  with pytest.raises(vf.BadVideosError, match="nocap.mp4: no caption"):  # before the pipeline
    builders.prepare("video_folder", tmp_path, source_dir=source, beam_options=BEAM, **SIZE)
  src = tmp_path / "only_decode_problems"
  os.makedirs(src)
  caption, video = _render(0, 12)
  vio.write_video(src / "good.mp4", video, 8)
  (src / "corrupt.mp4").write_bytes(b"\0" * 500)
  (src / "captions.csv").write_text(f'file,caption\ngood.mp4,"{caption}"\ncorrupt.mp4,noise\n')
  with pytest.raises(vf.BadVideosError, match="corrupt.mp4: unreadable"):
    builders.prepare("video_folder", tmp_path / "d", source_dir=src,
                     beam_options="runner=DirectRunner", **SIZE)
  assert not builders.get_builder("video_folder", tmp_path / "d", source_dir=src, **SIZE).is_prepared()
  with pytest.raises(ValueError, match="not KEY=VALUE"):
    builders.beam_pipeline_options("runner")


def test_manifests_csv_jsonl_parquet_with_extra_columns_and_bad_rows(source, tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  rows = [{"contentUrl": str(source / "a.mp4"), "name": "clip a", "page_dir": "x/1"},
          {"contentUrl": "sub/d.mp4", "name": "clip d", "page_dir": "x/2"},  # relative to the manifest
          {"contentUrl": "", "name": "no path", "page_dir": "x/3"},
          {"contentUrl": "b.gif", "name": " ", "page_dir": "x/4"}]
  (source / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
  pq.write_table(pa.Table.from_pylist(rows), source / "m.parquet")
  with open(source / "m.csv", "w") as f:
    f.write("contentUrl,name,page_dir\n" + "".join(f'{r["contentUrl"]},"{r["name"]}",{r["page_dir"]}\n' for r in rows))
  from imagen_video.data import video_sources
  for name in ("m.jsonl", "m.parquet", "m.csv"):
    entries, bad, _ = video_sources.manifest_entries(str(source / name), extra_columns=("page_dir",))
    assert [e.name for e in entries] == [str(source / "a.mp4"), "sub/d.mp4"], name
    assert entries[1].uri == str(source / "sub" / "d.mp4") and entries[1].extras == (("page_dir", "x/2"),)
    assert len(bad) == (3 if name == "m.jsonl" else 2), (name, bad)
    assert any("no file/path/video/contentUrl/url field" in r for _, r in bad)
    assert any("b.gif: caption/name/text is missing" in r for _, r in bad)
  assert any("not valid JSON" in r for _, r in video_sources.manifest_entries(str(source / "m.jsonl"))[1])
  with pytest.raises(ValueError, match=r"columns \['contentUrl', 'name', 'page_dir'\]; expected a caption column"):
    video_sources.manifest_entries(str(source / "m.csv"), caption_column="title")
  builder = builders.prepare("video_folder", tmp_path / "data", manifest=source / "m.parquet",
                             extra_columns=("page_dir",), skip_bad=True, **SIZE)
  ds = builder.as_data_source("train")
  got = {ds[i]["file"].decode(): ds[i] for i in range(len(ds))}
  assert set(got) == {str(source / "a.mp4"), "sub/d.mp4"}
  assert got["sub/d.mp4"]["extra_page_dir"] == b"x/2" and got["sub/d.mp4"]["caption"] == b"clip d"


def test_frames_stored_as_jpeg_at_a_chosen_quality(source, tmp_path):
  png = builders.prepare("video_folder", tmp_path / "png", source_dir=source, skip_bad=True, **SIZE)
  jpg = builders.prepare("video_folder", tmp_path / "jpg", source_dir=source, skip_bad=True,
                         image_format="jpeg", jpeg_quality=90, **SIZE)
  a, b = _examples(png), _examples(jpg)
  assert set(a) == set(b), (png.info.metadata["skipped"], jpg.info.metadata["skipped"])
  for key in a:
    mse = ((a[key][1].astype(float) - b[key][1]) ** 2).mean()
    assert 0 < mse and 10 * np.log10(255 ** 2 / mse) > 30, key  # lossy, but close
  with pytest.raises(ValueError, match="image_format='gif'"):
    vf.video_folder_config(source, image_format="gif")


def test_a_changed_source_is_named_and_refused_until_rebuilt(tmp_path):
  """Prepare, then add a new and a corrupt video (captioned): `prepare` (and so training)
  says what changed instead of using the old clips; --rebuild reports the corrupt file."""
  from imagen_video.cli import main as cli
  src, data = tmp_path / "src", tmp_path / "data"
  os.makedirs(src)
  captions = []
  for i, name in enumerate(["x.mp4", "y.mp4"]):
    caption, video = _render(i, 12, 24, 24)
    vio.write_video(src / name, video, 8)
    captions.append({"file": name, "caption": caption})
  (src / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
  config = os.path.join(os.path.dirname(__file__), "..", "configs", "video_folder.py")
  spec = ["prepare", "--config", f"{config}:source_dir={src},frames=8,height=24,width=24",
          "--data_dir", str(data)]
  assert cli.main(spec) == 0
  assert cli.main(spec) == 0  # unchanged: nothing to say
  caption, video = _render(5, 12, 24, 24)
  vio.write_video(src / "new.mp4", video, 8)
  (src / "broken.mp4").write_bytes(b"\x00" * 500)
  captions += [{"file": "new.mp4", "caption": caption}, {"file": "broken.mp4", "caption": "zeros"}]
  (src / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
  with pytest.raises(SystemExit) as e:
    cli.main(spec)
  assert "was prepared from files that have changed since: 2 added (broken.mp4, new.mp4); " \
         "1 changed in size or time (captions.jsonl); rebuild it (`imagen-video prepare" in str(e.value)
  with pytest.raises(SystemExit, match="broken.mp4"):  # rebuilt: the corrupt file is reported
    cli.main(spec + ["--rebuild"])
  kept = builders.get_builder("video_folder", data, source_dir=str(src), frames=8, height=24, width=24)
  assert kept.is_prepared() and len(kept.as_data_source("train")) == 2  # and the old one kept
  builder = builders.prepare("video_folder", data, source_dir=str(src), frames=8, height=24, width=24,
                             skip_bad=True, rebuild=True)
  files = {builder.as_data_source("train")[i]["file"].decode() for i in range(3)}
  assert files == {"x.mp4", "y.mp4", "new.mp4"} and builder.info.metadata["num_skipped"] == 1
