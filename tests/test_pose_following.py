"""The pose detector (trains, predicts in range, saves and loads, names a bad file) and the
pose-following metrics (exact on an oracle detector), table and contact sheet."""
import os

import numpy as np
import pytest
from PIL import Image, ImageFont

from imagen_video.data import athletes
from imagen_video.eval import pose_following as pf
from imagen_video.pose_detector import model as pd
from imagen_video.pose_detector import train as pose_detector_train
from imagen_video.media import contact_sheet

H = W = 32


@pytest.fixture(scope="module")
def tiny_detector():
  logs = []
  det = pose_detector_train.train_detector(H, W, steps=3, batch=8, pool=16, frames_per_clip=4, new_clips=1,
                          log=logs.append, log_every=1)
  return det, logs


def _clips(n, t, height=H, width=W, split="test"):
  cs = [athletes.sample_clip(0, split, i, width / height) for i in range(n)]
  video = np.stack([athletes.render(c, t, height, width) for c in cs])
  kv = [c.keypoints(t) for c in cs]
  return video, np.stack([k for k, _ in kv]), np.stack([v for _, v in kv])


class Oracle:
  """Answers each frame it was told about (looked up by its bytes) with given keypoints."""

  def __init__(self):
    self.table = {}

  def add(self, videos, keypoints):
    for f, k in zip(np.asarray(videos).reshape((-1,) + videos.shape[-3:]), keypoints.reshape(-1, 17, 2)):
      self.table[f.tobytes()] = k

  def predict(self, frames):
    return np.stack([self.table[f.tobytes()] for f in frames])


def test_detector_trains_and_predicts_normalised_keypoints(tiny_detector):
  det, logs = tiny_detector
  assert any("step 3/3" in line and "steps/s" in line and "ETA" in line for line in logs), logs
  video, _, _ = _clips(2, 3)
  frames = video.reshape(-1, H, W, 3)
  k = det.predict(frames)
  assert k.shape == (6, 17, 2) and k.dtype == np.float32
  assert np.isfinite(k).all()
  np.testing.assert_allclose(det.predict(video), k.reshape(2, 3, 17, 2), atol=1e-6)  # videos too
  np.testing.assert_allclose(det.predict(frames / 255.0), k, atol=1e-6)  # float in [0, 1]
  with pytest.raises(ValueError, match="32x32"):
    det.predict(np.zeros((1, 16, 16, 3), np.uint8))


def test_config_levels_follow_the_frame_size():
  assert len(pd.DetectorConfig.for_size(32, 32).channels) == 3
  assert len(pd.DetectorConfig.for_size(64, 64).channels) == 4
  assert len(pd.DetectorConfig.for_size(24, 40).channels) == 3
  with pytest.raises(ValueError, match="divide"):
    pd.DetectorConfig(30, 30)


def test_save_load_roundtrip_gives_identical_predictions(tiny_detector, tmp_path):
  det, _ = tiny_detector
  path = tmp_path / "sub" / "det.npz"
  assert det.save(path) == str(path)
  assert os.listdir(path.parent) == ["det.npz"]  # no temporary file left behind
  back = pd.load(path)
  assert back.config == det.config and back.info == det.info
  video, _, _ = _clips(1, 4)
  np.testing.assert_array_equal(back.predict(video), det.predict(video))
  same = pose_detector_train.load_or_train(path, H, W, log=lambda s: None)  # cached: no training
  np.testing.assert_array_equal(same.predict(video), det.predict(video))
  with pytest.raises(ValueError, match="det.npz.*32x32.*not 64x64"):
    pose_detector_train.load_or_train(path, 64, 64, log=lambda s: None)


def test_missing_or_corrupt_file_is_named(tiny_detector, tmp_path):
  det, _ = tiny_detector
  missing = tmp_path / "nope.npz"
  with pytest.raises(FileNotFoundError, match="nope.npz"):
    pd.load(missing)
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"not a zip file at all")
  with pytest.raises(ValueError, match="garbage.npz"):
    pd.load(garbage)
  good = det.save(tmp_path / "good.npz")
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(open(good, "rb").read()[:-200])
  with pytest.raises(ValueError, match="truncated.npz"):
    pd.load(truncated)
  with pytest.raises(ValueError, match="garbage.npz"):  # a cache never retrains over a bad file
    pose_detector_train.load_or_train(garbage, H, W)


def test_truth_against_itself_scores_perfect_and_the_floor(tiny_detector):
  det, _ = tiny_detector
  video, k, v = _clips(2, 4)
  s = pf.pose_scores(video, video, k, v, det)
  assert s["psnr"].shape == (2,) and np.isinf(s["psnr"]).all()
  np.testing.assert_allclose(s["ssim"], 1.0, atol=1e-9)
  np.testing.assert_array_equal(s["pose_error"], s["pose_error_truth"])  # the floor itself
  np.testing.assert_array_equal(s["pck@0.1"], s["pck@0.1_truth"])
  # float input in [0, 1] scores the same
  s2 = pf.pose_scores(video / 255.0, video, k, v, det)
  np.testing.assert_allclose(s2["pose_error"], s["pose_error"], atol=1e-6)


@pytest.mark.parametrize("height,width,dx,dy", [(32, 32, 0, 2), (32, 48, 3, 0)])
def test_pose_error_of_a_shifted_figure_is_the_shift_in_frame_heights(height, width, dx, dy):
  video, k, v = _clips(2, 3, height, width)
  shifted = np.roll(video, (dy, dx), axis=(2, 3))
  oracle = Oracle()
  oracle.add(video, k)
  oracle.add(shifted, k + np.array([dx / width, dy / height], np.float32))
  s = pf.pose_scores(shifted, video, k, v, oracle, return_keypoints=True)
  expected = np.hypot(dx, dy) / height  # pixels -> frame heights, whatever the aspect
  np.testing.assert_allclose(s["pose_error"], expected, rtol=1e-5)
  np.testing.assert_allclose(s["pose_error_truth"], 0.0, atol=1e-7)
  assert (s["pck@0.05"] == 0).all() and (s["pck@0.1"] == 1).all() and (s["pck@0.1_truth"] == 1).all()
  assert np.isfinite(s["psnr"]).all() and (s["ssim"] < 1).all()
  assert s["found"].shape == (2, 3, 17, 2)


def test_hidden_joints_do_not_count():
  video, k, v = _clips(1, 2)
  v = np.ones_like(v)
  v[:, :, 3] = 0  # one joint hidden in every frame
  wrong = k.copy()
  wrong[:, :, 3, 1] += 0.5  # ... and found half a frame height lower
  oracle = Oracle()
  oracle.add(video, wrong)
  s = pf.pose_scores(video, video, k, v, oracle)
  np.testing.assert_allclose(s["pose_error"], 0.0, atol=1e-7)
  v[:, :, 3] = 1
  s = pf.pose_scores(video, video, k, v, oracle)
  np.testing.assert_allclose(s["pose_error"], 0.5 / 17, rtol=1e-5)


def test_report_table_means_errors_and_paired_row():
  pose = {"psnr": np.array([20.0, 22, 24, 26]), "ssim": np.array([0.8, 0.8, 0.9, 0.9]),
          "pose_error": np.array([0.02, 0.03, 0.05, 0.02]), "pck@0.05": np.array([1.0, 1, 0.5, 1]),
          "pck@0.1": np.ones(4), "pose_error_truth": np.full(4, 0.01), "pck@0.05_truth": np.ones(4),
          "pck@0.1_truth": np.ones(4)}
  no_pose = dict(pose, psnr=pose["psnr"] - 1, pose_error=np.array([0.10, 0.20, 0.04, 0.12]))
  table = pf.report_table({"pose": pose, "no pose": no_pose})
  lines = table.splitlines()
  assert len(lines) == 6, table
  assert "| pose | 4 | 23.00 ± 1.29 |" in lines[2]  # std (ddof 1) 2.58 / sqrt(4)
  assert "0.0300 ± 0.0071" in lines[2]
  assert lines[4].startswith("| ground truth (detector floor) | 4 | - | - | 0.0100 ± 0.0000")
  assert lines[5].startswith("| pose − no pose (paired) | 4 | +1.00 ± 0.00 (4/4 better)")
  assert "-0.0850 ± 0.0371 (3/4 better)" in lines[5]  # lower pose error is better
  assert "+0.0% ± 0.0% (0/4 better)" in lines[5]
  inf = pf.report_table({"truth": dict(pose, psnr=np.full(4, np.inf))})
  assert "| truth | 4 | inf |" in inf


def test_side_by_side_sheet_writes_a_png_of_the_expected_height(tmp_path):
  n, t = 2, 4
  video, k, v = _clips(n, t)
  rows = {"generated (pose)": video, "generated (no pose)": video[:, ::-1],
          "ground truth": video / 255.0}
  path = pf.side_by_side_sheet(tmp_path / "sheet.png", k, v, rows, captions=["one", "two"], scale=2)
  img = Image.open(path)
  line_h = contact_sheet._line_height(ImageFont.load_default())
  count = n * (1 + len(rows))
  height = 2 * contact_sheet.MARGIN + count * (line_h + 2 * H) + (count - 1) * contact_sheet.ROW_GAP
  width = 2 * contact_sheet.MARGIN + t * 2 * W + (t - 1) * contact_sheet.GAP
  assert img.size == (width, height)
  with pytest.raises(ValueError, match="row 'bad'"):
    pf.side_by_side_sheet(tmp_path / "x.png", k, v, {"bad": video[:1]})


def test_soft_argmax_finds_a_peak_and_averages_two():
  """The detector's read-out on heatmaps with a known answer: a sharp peak at cell (row 2,
  column 5) of 8x8 is its centre ((5.5 / 8, 2.5 / 8)); two equal peaks give their midpoint."""
  logits = np.full((8, 8, 2), -50.0, np.float32)
  logits[2, 5, 0] = 50.0
  logits[1, 1, 1] = logits[5, 7, 1] = 50.0
  xy, p = pd.soft_argmax(logits)
  np.testing.assert_allclose(np.asarray(xy[0]), [5.5 / 8, 2.5 / 8], atol=1e-6)
  np.testing.assert_allclose(np.asarray(xy[1]), [(1.5 + 7.5) / 16, (1.5 + 5.5) / 16], atol=1e-6)
  np.testing.assert_allclose(np.asarray(p).sum(axis=(0, 1)), 1.0, atol=1e-6)
