"""Video files and contact sheets: round trips, errors naming the file, atomic writes."""
import os
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from imagen_video.data import moving_shapes as ms
from imagen_video.media import contact_sheet as cs
from imagen_video.media import video_io as vio


def _clip(index=0, frames=12, height=32, width=32):
  return ms.render(ms.sample_clip(0, "train", index, width / height), frames, height, width)


def _has_encoder(name):
  out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"],
                       capture_output=True, text=True).stdout
  return f" {name} " in out


def test_mp4_round_trip_is_close(tmp_path):
  video = _clip()
  path = vio.write_mp4(tmp_path / "a.mp4", video, fps=8)
  frames, fps = vio.read_video(path)
  assert frames.shape == video.shape and frames.dtype == np.uint8
  assert fps == 8
  assert np.abs(frames.astype(int) - video).mean() < 2.0  # lossy, but near-lossless at crf 18


@pytest.mark.skipif(not _has_encoder("libvpx-vp9"), reason="the bundled ffmpeg has no VP9 encoder")
def test_webm_round_trip_is_close(tmp_path):
  video = _clip(1)
  frames, fps = vio.read_video(vio.write_video(tmp_path / "a.webm", video, fps=8))
  assert frames.shape == video.shape and fps == 8
  assert np.abs(frames.astype(int) - video).mean() < 3.0


def test_gif_round_trip_is_exact_for_few_colours(tmp_path):
  video = _clip(2)
  frames, fps = vio.read_video(vio.write_gif(tmp_path / "a.gif", video, fps=10))
  assert frames.shape == video.shape and fps == 10
  assert np.abs(frames.astype(int) - video).max() <= 2


def test_gif_repeated_and_variable_delay_frames_keep_their_timing(tmp_path):
  video = _clip(3, frames=4)
  # PIL merges these 6 identical frames into one 0.6 s frame; the reader restores them.
  frames, fps = vio.read_video(vio.write_gif(tmp_path / "still.gif", np.repeat(video[:1], 6, 0), fps=10))
  assert frames.shape[0] == 6 and fps == 10
  # A foreign GIF with delays 100/300/100/100 ms shows 6 frames at 10 fps.
  images = [Image.fromarray(f) for f in video]
  images[0].save(tmp_path / "vfr.gif", save_all=True, append_images=images[1:],
                 duration=[100, 300, 100, 100], loop=0)
  frames, fps = vio.read_video(tmp_path / "vfr.gif")
  assert fps == 10 and frames.shape[0] == 6
  np.testing.assert_array_equal(frames[1], frames[3])


def test_odd_tiny_float_and_scaled_inputs(tmp_path):
  video = _clip(4, frames=3, height=15, width=17)
  frames, _ = vio.read_video(vio.write_mp4(tmp_path / "odd.mp4", video, fps=8))
  assert frames.shape == (3, 16, 18, 3)  # padded to even for yuv420p
  frames, _ = vio.read_video(vio.write_mp4(tmp_path / "big.mp4", video[:, :8, :8] / 255.0, fps=8, scale=4))
  assert frames.shape == (3, 32, 32, 3)
  np.testing.assert_array_equal(vio.to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])), [0, 128, 255, 255])
  with pytest.raises(ValueError, match="to_uint8"):
    vio.write_mp4(tmp_path / "bad.mp4", video * 2.0 - 1.0, fps=8)


@pytest.mark.parametrize("kind", ["random", "empty", "truncated", "missing", "folder"])
def test_unreadable_files_raise_video_read_error_naming_the_file(tmp_path, kind):
  path = tmp_path / f"{kind}.mp4"
  if kind == "folder":
    path.mkdir()
  if kind == "random":
    path.write_bytes(np.random.default_rng(0).bytes(4000))
  elif kind == "empty":
    path.write_bytes(b"")
  elif kind == "truncated":
    data = open(vio.write_mp4(tmp_path / "full.mp4", _clip(5, frames=24), fps=8), "rb").read()
    path.write_bytes(data[: len(data) // 2])
  with pytest.raises(vio.VideoReadError, match=f"{kind}.mp4") as info:
    vio.read_video(path)
  assert isinstance(info.value, ValueError) and info.value.reason
  expected = {"missing": "no such file", "folder": "a folder, not a video file", "empty": "empty"}
  assert expected.get(kind, "") in info.value.reason


def test_truncated_gif_raises(tmp_path):
  data = open(vio.write_gif(tmp_path / "full.gif", _clip(6), fps=8), "rb").read()
  (tmp_path / "cut.gif").write_bytes(data[: len(data) * 2 // 3])
  with pytest.raises(vio.VideoReadError, match="cut.gif"):
    vio.read_video(tmp_path / "cut.gif")


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
  path = tmp_path / "a.mp4"
  path.write_bytes(b"old")
  with pytest.raises(OSError, match="a.mp4"):
    vio.write_mp4(path, _clip(), fps=8, crf=-5)  # ffmpeg rejects the crf
  assert path.read_bytes() == b"old"
  assert sorted(os.listdir(tmp_path)) == ["a.mp4"]


def test_crash_mid_write_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
  def half_write_then_crash(cmd, **kwargs):
    with open(cmd[-1], "wb") as f:  # ffmpeg's output argument: the temporary file
      f.write(b"half a video")
    raise KeyboardInterrupt

  monkeypatch.setattr(vio.subprocess, "run", half_write_then_crash)
  with pytest.raises(KeyboardInterrupt):
    vio.write_mp4(tmp_path / "b.mp4", _clip(), fps=8)
  assert os.listdir(tmp_path) == []


def test_contact_sheet_layout(tmp_path):
  videos = [_clip(i, frames=12, height=16, width=16) for i in range(2)]
  captions = [ms.sample_clip(0, "train", i).caption for i in range(2)]
  path = tmp_path / "sheet.png"
  sheet = cs.contact_sheet(videos, captions, path, max_frames=8)
  scale = cs.auto_scale(16, 16)  # 16 px -> 64 px
  assert scale == 4
  assert sheet.shape[1] == 2 * cs.MARGIN + 8 * 64 + 7 * cs.GAP
  assert np.array_equal(np.asarray(Image.open(path)), sheet)
  # The last row's frames sit at the bottom; its caption just above them.
  top = sheet.shape[0] - cs.MARGIN - 64
  frames = cs.pick_frames(videos[1], 8)
  np.testing.assert_array_equal(sheet[top:top + 64, cs.MARGIN:cs.MARGIN + 64], vio.upscale(frames[0], 4))
  last = cs.MARGIN + 7 * (64 + cs.GAP)
  np.testing.assert_array_equal(sheet[top:top + 64, last:last + 64], vio.upscale(videos[1][-1], 4))
  caption_band = sheet[top - cs._line_height(cs.ImageFont.load_default()):top]
  assert (caption_band < 128).any(), "no caption text drawn above the row"
  assert sheet.shape[0] > 2 * (64 + 10)


def test_stack_rows_scales_rows_to_a_common_height(tmp_path):
  base, high = _clip(0, 8, 12, 20), _clip(0, 16, 24, 40)
  sheet = cs.stack_rows([base, high], ["base", "a caption " * 40], tmp_path / "s.png", max_frames=8,
                        title="stages")
  assert sheet.shape[1] == 2 * cs.MARGIN + 8 * 120 + 7 * cs.GAP  # both rows 72 px high, 120 px wide
  assert os.path.isfile(tmp_path / "s.png")


@pytest.mark.parametrize("failing", [(1,), (1, 3)], ids=["header_read", "header_and_frames_reads"])
def test_a_header_timeout_is_retried_though_another_thread_logged_an_error_into_stderr(
    tmp_path, monkeypatch, failing):
  """Seen under load after a Beam test: gRPC's 'E1206 ... epoll_wait error' line inside
  ffmpeg's captured stderr made a header timeout look like a broken file. A read opens
  ffmpeg twice (the header, then the frames at its rate): a timeout in either is retried
  (CI once failed a good file on the frames' read)."""
  path = str(tmp_path / "a.mp4")
  vio.write_video(path, np.zeros((8, 16, 16, 3), np.uint8), 8)
  real, calls = imageio_ffmpeg.read_frames, []
  glog = ("E1206 12:17:20.192516   30901 ev_epoll1_linux.cc:373] (event_engine) Epoll1Poller:0x56 "
          "encountered epoll_wait error: Bad file descriptor")

  def flaky(*args, **kwargs):
    calls.append(1)
    if len(calls) in failing:
      def timeout():
        raise OSError(f"Could not load meta information\n=== stderr ===\n\n{glog}")
        yield
      return timeout()
    return real(*args, **kwargs)
  monkeypatch.setattr(imageio_ffmpeg, "read_frames", flaky)
  frames, fps = vio.read_video(path)
  assert frames.shape == (8, 16, 16, 3) and fps == 8 and len(calls) == 2 + len(failing)
  assert "epoll" not in vio._ffmpeg_reason(OSError(f"{glog}\n[h264 @ 0x1] invalid NAL unit size"))
