"""athletes: determinism, same clips at two sizes, keypoints in frame, each exercise's
motion, held-out (exercise, body type) pairs, caption grammar, the TFDS builder."""
import itertools

import numpy as np
import pytest

from imagen_video.data import athletes as ath
from imagen_video.data import builders
from imagen_video.media.raster import Canvas
from imagen_video.pose.skeleton import INDEX, KEYPOINTS

T = np.arange(400) / 400  # dense clip times for motion checks


def _box_down(video, fy, fx):
  t, h, w, c = video.shape
  return video.astype(np.float64).reshape(t, h // fy, fy, w // fx, fx, c).mean(axis=(2, 4))


def _clips(exercise, count=6):
  """`count` clips of `exercise`, half from each split (so every body type shows up)."""
  out = []
  for split in ath.SPLITS:
    clips = (ath.sample_clip(0, split, i, 5 / 3 if i % 2 else 1.0) for i in range(400))
    out += itertools.islice((c for c in clips if c.exercise == exercise), count // 2)
  return out


def _cycles(y):
  """Cycles of a periodic signal: its rises through the middle of its range (one per
  cycle, so floor(reps) or ceil(reps) of them over `reps` cycles)."""
  mid = (y.min() + y.max()) / 2
  return int(np.sum((y[:-1] <= mid) & (y[1:] > mid)))


def test_clip_parameters_depend_only_on_seed_split_index():
  assert ath.sample_clip(3, "train", 7) == ath.sample_clip(3, "train", 7)
  assert ath.sample_clip(3, "train", 7) != ath.sample_clip(3, "test", 7)
  assert ath.sample_clip(3, "train", 7) != ath.sample_clip(4, "train", 7)
  clip = ath.sample_clip(1, "train", 2)
  np.testing.assert_array_equal(ath.render(clip, 4, 16, 16), ath.render(ath.sample_clip(1, "train", 2), 4, 16, 16))


def test_caption_grammar_round_trip_and_errors():
  for i in range(40):
    clip = ath.sample_clip(0, "train", i)
    assert ath.parse_caption(clip.caption.encode()) == {
        "exercise": clip.exercise, "body_type": clip.body_type, "skin": clip.skin,
        "shirt": clip.shirt, "shorts": clip.shorts, "background": clip.background}
  ok = "a tall thin person with dark skin in an orange shirt and blue shorts doing running in place on a sky background"
  assert ath.parse_caption(ok)["exercise"] == "running_in_place"
  with pytest.raises(ValueError, match="exercise 'burpees' not in"):
    ath.parse_caption(ok.replace("running in place", "burpees"))
  with pytest.raises(ValueError, match="shirt 'teal' not in"):
    ath.parse_caption(ok.replace("an orange shirt", "a teal shirt"))
  with pytest.raises(ValueError, match="is not of the form 'a\\(n\\) {build} person"):
    ath.parse_caption("a person doing squats")
  with pytest.raises(ValueError, match="wrong article; expected 'an average person"):
    ath.parse_caption(ok.replace("a tall thin", "a average"))


def test_keypoints_and_figure_stay_inside_the_frame():
  for split in ath.SPLITS:
    for i in range(30):
      clip = ath.sample_clip(0, split, i, aspect=5 / 3)
      k, vis = clip.keypoints(16)
      assert k.shape == (16, 17, 2) and vis.shape == (16, 17)
      assert k.min() > 0 and k.max() < 1, (split, i)
      video = ath.render(clip, 8, 24, 40)
      bg = Canvas(24, 40, ath._background(ath.BACKGROUNDS[clip.background], 24, 40, 4)).to_uint8()
      for edge in (np.s_[:, 0], np.s_[:, -1], np.s_[:, :, 0], np.s_[:, :, -1]):
        assert np.abs(video[edge].astype(int) - bg[None][edge]).max() <= 1, (split, i)


def test_two_sizes_give_the_same_clip_after_area_downsampling():
  for i in range(6):
    clip = ath.sample_clip(0, "train", i, aspect=5 / 3)
    hi, lo = ath.render(clip, 4, 48, 80), ath.render(clip, 4, 24, 40)
    err = np.abs(_box_down(hi, 2, 2) - lo) / 255.0
    assert err.mean() < 0.01 and err.max() < 0.3, (i, err.mean(), err.max())


def test_body_types_are_told_apart_by_proportions():
  legs = {b: [] for b in ath.BODY_TYPES}
  for split in ath.SPLITS:
    for i in range(60):
      clip = ath.sample_clip(0, split, i)
      b = clip.body
      legs[clip.body_type].append(((b.thigh + b.shin) / b.torso, b.leg_r / b.thigh))
  leg_ratio = {k: np.array(v)[:, 0] for k, v in legs.items()}
  thickness = {k: np.array(v)[:, 1] for k, v in legs.items()}
  assert leg_ratio["short_stocky"].max() < leg_ratio["average"].min()
  assert leg_ratio["average"].max() < leg_ratio["tall_thin"].min()
  assert thickness["tall_thin"].max() < thickness["average"].min() < thickness["average"].max() < thickness["short_stocky"].min()


def test_held_out_pairs_are_only_in_test():
  train = {(c.exercise, c.body_type) for c in (ath.sample_clip(0, "train", i) for i in range(300))}
  test = {(c.exercise, c.body_type) for c in (ath.sample_clip(0, "test", i) for i in range(60))}
  assert not train & ath.HELD_OUT
  assert len(train) == 18 - len(ath.HELD_OUT)
  assert test == ath.HELD_OUT
  # Every exercise and every body type is still seen in training, just not together.
  assert {e for e, _ in train} == set(ath.EXERCISES) and {b for _, b in train} == set(ath.BODY_TYPES)


def test_squats_lower_the_hips_once_per_repetition():
  for clip in _clips("squats"):
    pos, _, _ = clip.project(T)
    hip_y = (pos["left_hip"][:, 1] + pos["right_hip"][:, 1]) / 2  # image y: grows downwards
    later = clip.project(T + 1 / clip.motion.reps)[0]
    np.testing.assert_allclose(later["left_hip"], pos["left_hip"], atol=1e-9)
    height = clip.scale * clip.body.legs
    assert np.ptp(hip_y) > 0.3 * height  # a deep bend
    reps = clip.motion.reps
    assert np.floor(reps) <= _cycles(hip_y) <= np.ceil(reps)
    np.testing.assert_allclose(pos["left_ankle"], pos["left_ankle"][:1].repeat(len(T), 0), atol=1e-9)  # feet planted


def test_jumping_jacks_raise_the_wrists_above_the_head_and_back():
  for clip in _clips("jumping_jacks"):
    pos, _, _ = clip.project(T)
    head_top = pos["head"][:, 1] - clip.scale * clip.body.head_r
    for side in ("left", "right"):
      wrist = pos[f"{side}_wrist"][:, 1]
      above = wrist < head_top
      assert above.any() and (wrist > pos[f"{side}_shoulder"][:, 1]).any()
      assert np.floor(clip.motion.reps) <= _cycles(-wrist) <= np.ceil(clip.motion.reps)
    spread = np.abs(pos["left_ankle"][:, 0] - pos["right_ankle"][:, 0])
    assert spread.max() > 1.5 * spread.min()  # the legs open and close too


def test_running_in_place_alternates_the_knees():
  for clip in _clips("running_in_place"):
    pos, _, _ = clip.project(T)
    lift = {s: pos["pelvis"][:, 1] - pos[f"{s}_knee"][:, 1] for s in ("left", "right")}  # up is positive
    assert np.corrcoef(lift["left"], lift["right"])[0, 1] < -0.3
    for knee in lift.values():
      assert np.ptp(knee) > 0.25 * clip.scale * clip.body.thigh
      assert np.floor(clip.motion.reps) <= _cycles(knee) <= np.ceil(clip.motion.reps)


def test_lunges_keep_the_feet_planted_while_the_hips_drop():
  for clip in _clips("lunges"):
    pos, _, _ = clip.project(T)
    front = "left" if clip.motion.side == 1 else "right"
    np.testing.assert_allclose(pos[f"{front}_ankle"], pos[f"{front}_ankle"][:1].repeat(len(T), 0), atol=1e-9)
    stance = np.abs(pos["left_ankle"][:, 0] - pos["right_ankle"][:, 0])
    assert stance.min() > 0.25 * clip.scale * clip.body.legs * abs(np.sin(np.deg2rad(clip.yaw)))
    hip_y = pos["pelvis"][:, 1]
    assert np.ptp(hip_y) > 0.2 * clip.scale * clip.body.legs
    assert np.floor(clip.motion.reps) <= _cycles(hip_y) <= np.ceil(clip.motion.reps)


def test_arm_circles_keep_the_arms_out_and_circle():
  for clip in _clips("arm_circles"):
    pos, _, _ = clip.project(T)
    arm = clip.scale * (clip.body.upper_arm + clip.body.forearm)
    for side in ("left", "right"):
      reach = np.abs(pos[f"{side}_wrist"][:, 0] - pos[f"{side}_shoulder"][:, 0])
      assert reach.min() > 0.4 * arm  # hanging arms reach about 0.1
      wrist_y = pos[f"{side}_wrist"][:, 1]
      assert np.ptp(wrist_y) > 0.5 * arm
      assert np.floor(clip.motion.reps) <= _cycles(wrist_y) <= np.ceil(clip.motion.reps)


def test_push_ups_keep_the_body_near_horizontal_and_the_hands_planted():
  for clip in _clips("push_ups"):
    pos, _, _ = clip.project(T)
    axis = pos["neck"] - (pos["left_ankle"] + pos["right_ankle"]) / 2
    angle = np.degrees(np.arctan2(np.abs(axis[:, 1]), np.abs(axis[:, 0])))
    assert angle.max() < 35
    np.testing.assert_allclose(pos["left_wrist"], pos["left_wrist"][:1].repeat(len(T), 0), atol=1e-9)
    shoulder_y = pos["left_shoulder"][:, 1]
    assert np.floor(clip.motion.reps) <= _cycles(shoulder_y) <= np.ceil(clip.motion.reps)


def test_face_points_are_hidden_on_the_far_side_in_profile():
  for clip in _clips("push_ups"):  # a profile view
    _, vis = clip.keypoints(8)
    far = "left" if clip.yaw > 0 else "right"  # facing right, one sees the right side
    assert (vis[:, INDEX[f"{far}_ear"]] == 0).all() and (vis[:, INDEX[f"{far}_eye"]] == 0).all()
    assert (vis[:, [INDEX[k] for k in KEYPOINTS[5:]]] == 1).all()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return builders.prepare("athletes", data_dir, frames=8, height=32, width=32, num_train=6, num_test=3,
                          seed=2, extra_resolutions=((4, 16, 16),))


def test_builder_stores_the_generators_clips_and_keypoints(prepared):
  assert prepared.builder_config.name == "8x32x32_fps8_n6-3_s2_x4x16x16"
  assert sorted(map(tuple, prepared.info.metadata["held_out"])) == sorted(ath.HELD_OUT)
  for split, count in (("train", 6), ("test", 3)):
    source = prepared.as_data_source(split)
    assert len(source) == count
    for n in range(count):
      ex = source[n]
      clip = ath.sample_clip(2, split, int(ex["index"]))
      k, vis = clip.keypoints(8)
      np.testing.assert_array_equal(ex["keypoints"], k)
      np.testing.assert_array_equal(ex["visibility"], vis)
      np.testing.assert_array_equal(np.stack(ex["video"]), ath.render(clip, 8, 32, 32))
      np.testing.assert_array_equal(np.stack(ex["video_4x16x16"]), ath.render(clip, 8, 16, 16)[::2])
      assert ex["caption"].decode() == clip.caption
      assert ath.parse_caption(ex["caption"])["exercise"] == list(ath.EXERCISES)[ex["exercise"]]
      assert list(ath.BODY_TYPES)[ex["body_type"]] == clip.body_type


def test_pipeline_renders_pose_maps_windowed_and_cropped_with_the_video(prepared):
  import os

  from imagen_video.data import pipeline
  from imagen_video.pose import render
  root = os.path.dirname(os.path.dirname(os.path.dirname(prepared.data_dir)))
  c = pipeline.default_data_config()
  c.update(dict(name="athletes", data_dir=root, split="train", batch_size=2, shuffle=False,
                repeat=False, frames=4, pose=True, prefetch=0))
  c.builder = dict(frames=8, height=32, width=32, num_train=6, num_test=3, seed=2,
                   extra_resolutions=((4, 16, 16),))
  batch = next(iter(pipeline.VideoBatches(c, process_index=0, process_count=1)))
  assert batch["pose_maps"].shape == batch["video"].shape == (2, 4, 32, 32, 3)
  ex = prepared.as_data_source("train")[0]
  want = render.render_skeleton(ex["keypoints"][:4], ex["visibility"][:4], 32, 32)
  np.testing.assert_allclose(batch["pose_maps"][0], want / 127.5 - 1, atol=1e-6)
  c.crop = (16, 16)
  c.low_res_keys = ("video_4x16x16",)
  batch = next(iter(pipeline.VideoBatches(c, process_index=0, process_count=1)))
  assert batch["pose_maps"].shape == batch["video"].shape == (2, 4, 16, 16, 3)
