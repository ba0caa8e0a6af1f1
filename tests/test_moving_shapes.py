"""moving_shapes: grammar, determinism, same clips at two resolutions, labels vs pixels."""
import os

import numpy as np
from PIL import Image
import pytest

from imagen_video.data import builders
from imagen_video.data import moving_shapes as ms
from imagen_video.eval import caption_check


def _box_down(video, fy, fx):
  t, h, w, c = video.shape
  return video.astype(np.float64).reshape(t, h // fy, fy, w // fx, fx, c).mean(axis=(2, 4))


def test_clip_parameters_depend_only_on_seed_split_index():
  assert ms.sample_clip(3, "train", 7) == ms.sample_clip(3, "train", 7)
  assert ms.sample_clip(3, "train", 7) != ms.sample_clip(3, "test", 7)
  assert ms.sample_clip(3, "train", 7) != ms.sample_clip(4, "train", 7)


def test_caption_grammar_round_trip_and_errors():
  assert ms.parse_caption("a cyan triangle moving up") == ("cyan", "triangle", "up")
  with pytest.raises(ValueError, match="color 'purple'"):
    ms.parse_caption("a purple circle moving up")
  with pytest.raises(ValueError, match="not of the form"):
    ms.parse_caption("a red circle")


def test_shape_stays_inside_the_frame():
  for i in range(100):
    video = ms.render(ms.sample_clip(0, "train", i), 16, 32, 32)
    border = np.concatenate([video[:, 0], video[:, -1], video[:, :, 0], video[:, :, -1]], axis=1)
    assert border.max() == 0, f"clip {i} touches the border"


def test_sizes_change_only_the_size_and_larger_shapes_survive_blur_at_16px():
  """`sizes` and `gap` (the demo's larger shapes): the same colour, shape and direction draws,
  sizes in range, still inside the frame and read by the caption check; blurred by 0.9 px at
  16x16 (about what a model's output loses), more of them keep their shape than the default's."""
  from scipy.ndimage import gaussian_filter
  big = (0.2, 0.28)
  small_clips = [ms.sample_clip(0, "train", i) for i in range(90)]
  big_clips = [ms.sample_clip(0, "train", i, sizes=big, gap=0.035) for i in range(90)]
  assert [c.caption for c in small_clips] == [c.caption for c in big_clips]
  assert all(0.2 <= c.size <= 0.28 for c in big_clips)
  read = {}
  for name, clips in (("small", small_clips), ("big", big_clips)):
    inside = [ms.render(c, 8, 32, 32) for c in clips]  # as test_shape_stays_inside_the_frame
    assert all(v[:, [0, -1]].max() == 0 and v[:, :, [0, -1]].max() == 0 for v in inside)
    videos = [ms.render(c, 8, 16, 16) for c in clips]
    assert caption_check.score(videos, [c.caption for c in clips])["accuracy"]["all"] == 1.0
    blurred = [np.clip(gaussian_filter(v.astype(float), (0, 0.9, 0.9, 0)), 0, 255).astype(np.uint8)
               for v in videos]
    read[name] = caption_check.score(blurred, [c.caption for c in clips])["accuracy"]["shape"]
  assert read["big"] > read["small"] + 0.15, read


def test_sizes_are_named_and_checked():
  from imagen_video.data import moving_shapes_tfds
  config = moving_shapes_tfds.moving_shapes_config(sizes=(0.2, 0.28), gap=0.035)
  assert config.name.endswith("_r0.2-0.28_g0.035") and config.sizes == (0.2, 0.28)
  assert "_r" not in moving_shapes_tfds.moving_shapes_config().name
  with pytest.raises(ValueError, match="data.builder.sizes"):
    moving_shapes_tfds.moving_shapes_config(sizes=(0.3, 0.2))
  with pytest.raises(ValueError, match="data.builder.gap"):
    moving_shapes_tfds.moving_shapes_config(gap=-0.1)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_caption_check_reads_every_clip_and_its_cleanliness_at_every_stage_size(size):
  """The data's own clips at the cascade's sizes: every label right (shapes by template:
  the old bounding-box fill ratio read 76% at 16 px), a black background, and an edge band
  of one anti-aliased pixel or less."""
  videos, captions = [], []
  for i in range(60 if size == 64 else 150):
    clip = ms.sample_clip(0, "train", i)
    videos.append(ms.render(clip, 8, size, size))
    captions.append(clip.caption)
  result = caption_check.score(videos, captions)
  assert result["accuracy"] == {"color": 1.0, "shape": 1.0, "direction": 1.0, "color_direction": 1.0,
                                "all": 1.0}
  preds = [caption_check.classify(v) for v in videos[:20]]
  assert all(p["background"] == 0.0 for p in preds)
  assert all(0.3 < p["edge_px"] < 1.0 for p in preds)


def test_cleanliness_figures_grow_with_grain_and_blur_and_grain_does_not_change_the_shape():
  """Grain on the background raises its grey level by about what was added (the mean of
  the brightest of three clipped N(0, 8) channels, computed here), and an upsampled 16 px
  clip has edges several pixels wide; neither hides a 64 px shape from the check."""
  rng = np.random.default_rng(0)
  clip = ms.sample_clip(0, "test", 3)
  clean = ms.render(clip, 8, 64, 64)
  noise = rng.normal(0, 8, clean.shape)
  grainy = np.clip(clean + noise, 0, 255).astype(np.uint8)
  pred = caption_check.classify(grainy)
  expected = np.clip(noise, 0, 255).astype(np.uint8).max(-1).mean()  # background everywhere
  assert pred["shape"] == clip.shape
  assert pred["background"] == pytest.approx(expected, rel=0.1)
  low = ms.render(clip, 8, 16, 16)
  blurred = np.stack([np.asarray(Image.fromarray(f).resize((64, 64), Image.BILINEAR)) for f in low])
  sharp, blurry = caption_check.classify(clean)["edge_px"], caption_check.classify(blurred)["edge_px"]
  assert blurry > 3 * sharp


def test_caption_check_detects_wrong_captions():
  clip = ms.sample_clip(0, "train", 0)
  video = ms.render(clip, 8, 32, 32)
  other_color = next(c for c in ms.COLORS if c != clip.color)
  other_dir = next(d for d in ms.DIRECTIONS if d != clip.direction)
  rows = caption_check.score([video, video], [ms.caption(other_color, clip.shape, clip.direction),
                                              ms.caption(clip.color, clip.shape, other_dir)])["rows"]
  assert not rows[0]["color"] and rows[0]["direction"]
  assert rows[1]["color"] and not rows[1]["direction"]


@pytest.fixture(scope="module")
def two_resolutions(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  common = dict(frames=8, num_train=24, num_test=4, seed=5)
  high = builders.prepare("moving_shapes", data_dir, height=32, width=32,
                          extra_resolutions=((4, 8, 8),), **common)
  low = builders.prepare("moving_shapes", data_dir, height=16, width=16, **common)
  return high, low


def _by_index(builder, split="train"):
  source = builder.as_data_source(split)
  return {int(ex["index"]): ex for ex in (source[i] for i in range(len(source)))}


def test_two_resolutions_from_the_same_seed_give_the_same_clips(two_resolutions):
  high, low = (_by_index(b) for b in two_resolutions)
  assert sorted(high) == sorted(low) == list(range(24))
  for i in high:
    assert high[i]["caption"] == low[i]["caption"]
    np.testing.assert_allclose(high[i]["positions"], low[i]["positions"])
    hi, lo = np.stack(high[i]["video"]), np.stack(low[i]["video"])
    err = np.abs(_box_down(hi, 2, 2) - lo) / 255.0
    assert err.mean() < 0.01 and err.max() < 0.3, (i, err.mean(), err.max())


def test_extra_resolution_is_a_low_fps_low_res_copy(two_resolutions):
  high, low = (_by_index(b) for b in two_resolutions)
  for i in high:
    pair = np.stack(high[i]["video_4x8x8"])
    assert pair.shape == (4, 8, 8, 3)
    ref = _box_down(np.stack(high[i]["video"]), 4, 4)[::2]
    assert (np.abs(pair - ref) / 255.0).mean() < 0.01


def test_builder_is_versioned_and_names_its_parameters(two_resolutions):
  high, _ = two_resolutions
  assert str(high.info.version) == "1.0.0"
  assert high.builder_config.name == "8x32x32_fps8_n24-4_s5_x4x8x8"
  assert high.info.metadata["fps"] == 8.0
  assert high.info.splits["test"].num_examples == 4


def test_a_tied_shape_vote_is_the_same_in_every_process():
  """Half the frames a circle, half a square: the vote ties, and the tie goes to the smaller
  summed template error, whatever the process's hash seed (a set's order used to decide it)."""
  import subprocess
  import sys
  code = ("import numpy as np; from imagen_video.data import moving_shapes as ms; "
          "from imagen_video.eval import caption_check as cc; "
          
          "v = np.concatenate([ms.render(ms.Clip('red', s, 'right', 0.2, (0.3 + 0.05 * i, 0.5), (0, 0), 1.0), 1, 32, 32) "
          "for i, s in enumerate(['circle', 'square'] * 4)]); "
          "r = cc.classify(v); print(r['shape'])")
  seen = {subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONHASHSEED=str(seed)),
                         capture_output=True, text=True, check=True).stdout.strip() for seed in range(6)}
  assert len(seen) == 1, seen
  frames = [ms.render(ms.Clip("red", s, "right", 0.2, (0.3 + 0.05 * i, 0.5), (0, 0), 1.0), 1, 32, 32)[0]
            for i, s in enumerate(["circle", "square"] * 4)]
  weights = [f.max(-1).astype(np.float64) / 255 for f in frames]
  totals = {k: sum(caption_check.template_shape(w)[1]["errors"][k] for w in weights) for k in ms.SHAPES}
  votes = [caption_check.template_shape(w)[0] for w in weights]
  assert votes.count("circle") == votes.count("square") == 4
  assert seen == {min(("circle", "square"), key=totals.get)}
