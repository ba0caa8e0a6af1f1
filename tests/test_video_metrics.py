"""Per-frame PSNR/SSIM (SSIM against scikit-image's reference), colour shift, diversity."""
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from imagen_video.eval import video_metrics as vm


def test_ssim_matches_scikit_image_frame_by_frame():
  rng = np.random.default_rng(0)
  truth = rng.uniform(size=(2, 3, 24, 20, 3))
  noisy = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1)
  ours = vm.ssim_per_frame(noisy, truth)
  ref = [[structural_similarity(noisy[n, t], truth[n, t], gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0, channel_axis=-1)
          for t in range(3)] for n in range(2)]
  np.testing.assert_allclose(ours, ref, rtol=1e-6)
  assert np.allclose(vm.ssim_per_frame(truth, truth), 1.0)


def test_psnr_per_frame_and_frame_scores():
  truth = np.zeros((1, 2, 16, 16, 3), np.uint8)
  pred = truth.copy()
  pred[0, 1] = 255  # frame 1 entirely wrong: mse 1 -> 0 dB; frame 0 exact
  p = vm.psnr_per_frame(pred, truth)
  assert np.isinf(p[0, 0]) and p[0, 1] == 0.0
  with pytest.raises(ValueError, match="expected equal"):
    vm.psnr_per_frame(pred[:, :1], truth)
  with pytest.raises(ValueError, match="11-tap window"):
    vm.ssim_per_frame(pred[:, :, :8, :8], truth[:, :, :8, :8])


def test_color_shift_and_diversity():
  still = np.full((2, 4, 8, 8, 3), 0.5)
  assert vm.color_shift(still) == 0.0
  drift = still.copy()
  drift[:, :, :, :, 0] += np.array([0, 0.1, 0.2, 0.3])[None, :, None, None]  # red drifts
  expected = np.std([0, 0.1, 0.2, 0.3]) * 255 / 3  # one of three channels
  assert vm.color_shift(drift) == pytest.approx(expected)
  videos = np.stack([still[0], still[0] + 0.1, still[0]])
  assert vm.diversity(videos, ["a", "a", "b"]) == pytest.approx(0.1 * 255)
  with pytest.raises(ValueError, match="two samples"):
    vm.diversity(videos, ["a", "b", "c"])
