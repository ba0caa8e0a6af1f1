"""Pose through the cascade: separate pose and text guidance, skeleton maps at every stage's
frames and size, the pose-free model without a pose, and `sample --pose` / `pose-video`."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagen_video.data import athletes
from imagen_video.diffusion import guidance, samplers
from imagen_video.media import video_io
from imagen_video.pose import keypoints_io, render
from imagen_video.stage import pose_input
from imagen_video.stage.sampler import Request, StageSampler

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "cascade_pose_tiny.py")


def _poses(frames=16, index=0):
  labels = athletes.labels(athletes.sample_clip(0, "test", index, 1.0), frames)
  return labels["keypoints"], labels["visibility"]


def test_pose_and_text_guidance_weights_act_apart():
  full, pose, none = (jnp.full((2, 3), v) for v in (7.0, 3.0, 1.0))
  w = jnp.array([2.0, 4.0])
  same = guidance.pose_text_combine(full, pose, none, w, w)  # one weight: joint guidance
  np.testing.assert_allclose(same, guidance.cfg_combine(full, none, w))
  text_only = guidance.pose_text_combine(full, pose, none, w, 1.0)  # w_p = 1: text guidance
  np.testing.assert_allclose(text_only, guidance.cfg_combine(full, pose, w))
  np.testing.assert_allclose(guidance.pose_text_combine(full, pose, none, 0.0, 5.0),
                             none + 5 * (pose - none))

  def model_fn(state, x, log_snr, cond):  # 1 per kept text, 10 per kept pose: shows the batch
    keep = (~cond["drop_text"]) * 1.0 + (~cond["drop_pose"]) * 10.0
    return jnp.broadcast_to(keep[:, None], x.shape)
  z = jnp.zeros((2, 3))
  cond = {"pose_maps": jnp.zeros((2, 3))}
  out = samplers.guided_forward(model_fn, None, z, jnp.zeros(2), cond, 3.0, jnp.array([2.0, 0.5]))
  # none = 0, pose = 10, full = 11: 0 + w_p * 10 + w_t * 1
  np.testing.assert_allclose(out, np.array([[23.0] * 3, [8.0] * 3]))


def test_pose_maps_take_every_kth_pose_at_each_stage_size():
  k, v = _poses(16)
  maps = pose_input.pose_maps(k, v, (2, 8, 16, 16, 3))
  assert maps.shape == (2, 8, 16, 16, 3) and maps.dtype == np.float32
  want = render.render_skeleton(k[::2], v[::2], 16, 16).astype(np.float32) / 127.5 - 1
  np.testing.assert_array_equal(maps[1], want)
  k2, v2 = _poses(16, index=1)
  both = pose_input.pose_maps(np.stack([k, k2]), np.stack([v, v2]), (2, 16, 32, 32, 3))
  assert not np.array_equal(both[0], both[1])  # one sequence per sample
  with pytest.raises(ValueError, match="12 frames cannot feed a 8-frame stage"):
    pose_input.pose_maps(k[:12], v[:12], (1, 8, 16, 16, 3))
  with pytest.raises(ValueError, match="3 sequences for a batch of 2"):
    pose_input.pose_maps(np.stack([k] * 3), np.stack([v] * 3), (2, 16, 16, 16, 3))


@pytest.fixture(scope="module")
def pose_cascade(tmp_path_factory):
  """The runlocal pose cascade, 2 training steps per stage (enough to have checkpoints)."""
  from imagen_video.train import trainer
  from imagen_video.utils import configs_loader
  root = str(tmp_path_factory.mktemp("pose_cascade"))
  spec = f"{CONFIG}:runlocal,steps=2,root={root},data_dir={os.path.join(root, 'tfds')}"
  cascade = configs_loader.load(spec)
  for entry in cascade.stages:
    trainer.train_and_evaluate(configs_loader.load(entry["config"]), entry["workdir"])
  return spec, cascade


def test_cascade_carries_the_pose_to_every_stage(pose_cascade):
  from imagen_video.cascade.cascade import Cascade
  _, config = pose_cascade
  cascade = Cascade.load(config)
  # a trained-looking guider: random weights in its zero-initialised output conv
  for run in cascade.runs:
    out = run.params["unet"]["pose_guider"]["out"]["kernel"]
    run.params["unet"]["pose_guider"]["out"]["kernel"] = 0.3 * jax.random.normal(
        jax.random.key(1), out.shape)
  prompt = (athletes.sample_clip(0, "test", 0, 1.0).caption,)
  k, v = _poses(16)
  posed = cascade.sample(Request(prompts=prompt, pose=(k, v)))
  final, stages = video_io.to_uint8(posed.video), [video_io.to_uint8(s) for _, s in posed.stages]
  assert [s.shape[1:4] for s in stages] == [(8, 16, 16), (16, 16, 16), (16, 32, 32)]
  free_out = cascade.sample(Request(prompts=prompt))
  free, free_stages = video_io.to_uint8(free_out.video), [video_io.to_uint8(s) for _, s in free_out.stages]
  assert final.shape == free.shape == (1, 16, 32, 32, 3)
  for with_pose, without in zip(stages, free_stages):  # the pose reached every output
    assert np.abs(with_pose.astype(int) - without).mean() > 0.05  # (about 0.2 measured)
  k2, v2 = _poses(16, index=3)
  other = video_io.to_uint8(cascade.sample(Request(prompts=prompt, pose=(k2, v2))).video)
  assert np.abs(other.astype(int) - final).mean() > 0.05  # another pose, another video

  base = cascade.runs[0]
  run = lambda w: base.draw(Request(prompts=prompt, steps=2, pose=(k, v), pose_guidance=w))
  plain = StageSampler(base.stage, base.params, defaults=dataclasses.replace(base.defaults, pose_guidance=None))
  # w_p = 1 is the plain pose-conditional model (the 2B path); another weight runs 3B
  np.testing.assert_allclose(run(1.0), plain.draw(Request(prompts=prompt, steps=2, pose=(k, v))), atol=1e-6)
  assert np.abs(run(4.0) - run(1.0)).max() > 1e-3
  maps = pose_input.pose_maps(k, v, base.output_shape(1))
  with pytest.raises(ValueError, match=r"pose_maps \(1, 8, 8, 8, 3\): expected \(1, 8, 16, 16, 3\)"):
    base.stage.pose_inputs(maps[:, :, ::2, ::2], base.output_shape(1))


def test_sample_cli_takes_a_pose_file(pose_cascade, tmp_path):
  from imagen_video.cli import main as cli
  spec, _ = pose_cascade
  k, v = _poses(16)
  keypoints_io.write_coco(tmp_path / "poses.json", k, v, 640, 480)
  prompt = athletes.sample_clip(0, "test", 0, 1.0).caption
  assert cli.main(["sample", "--cascade", spec, "--prompt", prompt, "--pose", str(tmp_path / "poses.json"),
                   "--out", str(tmp_path / "a.mp4")]) == 0
  assert video_io.read_video(tmp_path / "a.mp4")[0].shape[:3] == (16, 128, 128)
  side = video_io.read_video(tmp_path / "a_pose.mp4")[0]
  assert side.shape[0] == 16 and side.shape[2] > 3 * side.shape[1] - 16  # pose | video | overlay
  keypoints_io.write_coco(tmp_path / "short.json", k[:10], v[:10], 640, 480)
  with pytest.raises(SystemExit, match="10 frames, but the output has 16.*--pose_retime"):
    cli.main(["sample", "--cascade", spec, "--prompt", prompt, "--pose", str(tmp_path / "short.json"),
              "--out", str(tmp_path / "b.mp4")])
  assert cli.main(["sample", "--cascade", spec, "--prompt", prompt, "--pose", str(tmp_path / "short.json"),
                   "--pose-retime", "--out", str(tmp_path / "b.mp4")]) == 0
  with pytest.raises(SystemExit, match="--pose_guidance is for one stage"):
    cli.main(["sample", "--cascade", spec, "--prompt", prompt, "--pose", str(tmp_path / "poses.json"),
              "--pose-guidance", "2", "--out", str(tmp_path / "c.mp4")])


def test_pose_video_cli_renders_the_sequence_and_reports_bad_files(tmp_path):
  from imagen_video.cli import main as cli
  k, v = _poses(12)
  keypoints_io.write_coco(tmp_path / "poses.json", k, v, 64, 64)
  assert cli.main(["pose-video", "--pose", str(tmp_path / "poses.json"), "--out", str(tmp_path / "s.mp4"),
                   "--size", "32x48"]) == 0
  skeleton = video_io.read_video(tmp_path / "s.mp4")[0]
  assert skeleton.shape[0] == 12 and skeleton.max() > 200  # coloured limbs on black
  (tmp_path / "bad.json").write_text('{"annotations": [{"image_id": 1, "keypoints": [1, 2, 2]}]}')
  with pytest.raises(SystemExit, match=r"bad.json.*'keypoints' has 3 numbers; expected 51"):
    cli.main(["pose-video", "--pose", str(tmp_path / "bad.json"), "--out", str(tmp_path / "t.mp4"),
              "--pose-width", "64", "--pose-height", "64"])
  with pytest.raises(SystemExit, match="--size .32.: expected HEIGHTxWIDTH"):
    cli.main(["pose-video", "--pose", str(tmp_path / "poses.json"), "--out", str(tmp_path / "t.mp4"),
              "--size", "32"])


def test_pose_eval_scores_samples_with_and_without_pose(tmp_path, monkeypatch):
  from imagen_video.eval import pose_eval
  from imagen_video.stage.sampler import Output
  from imagen_video.utils import configs_loader
  config = configs_loader.load(f"{CONFIG}:stage=ssr,runlocal,data_dir={tmp_path / 'tfds'}")
  clips = pose_eval.test_clips(config, 3)
  assert clips["video"].shape == (3, 16, 32, 32, 3) and clips["keypoints"].shape == (3, 16, 17, 2)
  flip = lambda v: v[..., ::-1, :]

  class Oracle:  # "detects" the keypoints each frame was drawn with (mirrored for flipped frames)
    table = {}
    for video, k in zip(clips["video"], clips["keypoints"]):
      for frame, kf in zip(video, k):
        table[frame.tobytes()] = kf
        table[flip(frame).tobytes()] = np.stack([1 - kf[:, 0], kf[:, 1]], -1)

    def predict(self, frames):
      return np.stack([self.table[f.tobytes()] for f in frames])

  clips_config = config

  class Sampler:  # with pose: the truth; without: mirrored
    config = clips_config

    def sample(self, request):
      index = [clips["captions"].index(p) for p in request.prompts]
      video = clips["video"][index] if request.pose is not None else flip(clips["video"][index])
      assert request.pose is None or np.array_equal(request.pose[0], clips["keypoints"][index])
      video = video.astype(np.float32) / 127.5 - 1
      return Output(video, [("oracle", video)], request.seeds())

  def oracle_or_train(path, h, w, log=print):
    assert (h, w) == (32, 32)
    return Oracle()
  monkeypatch.setattr(pose_eval.detector_train, "load_or_train", oracle_or_train)
  monkeypatch.setattr(pose_eval.registry, "describe", lambda sampler: "oracle")
  results = pose_eval.evaluate(Sampler(), num=3, seed=0, batch=2, out_dir=str(tmp_path / "eval"),
                               log=lambda *a: None)
  np.testing.assert_allclose(results["with pose"]["pose_error"], 0, atol=1e-6)
  assert (results["without pose"]["pose_error"] > 0.01).all()  # mirrored figures are off
  report = (tmp_path / "eval" / "pose_eval.md").read_text()
  assert "| with pose − without pose (paired) | 3 |" in report and "(3/3 better)" in report
  assert (tmp_path / "eval" / "pose_eval.png").stat().st_size > 0
