"""Conditional generation through one stage, the cascade and the CLI (runlocal tiny cascade)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from imagen_video.cascade import cascade as cascade_lib
from imagen_video.data import moving_shapes as ms
from imagen_video.media import video_io
from imagen_video.stage import known as known_lib
from imagen_video.stage.sampler import Request

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "cascade_tiny.py")
PROMPT = "a red circle moving left"


def _clip(frames=16, size=64):
  return ms.render(ms.sample_clip(0, "test", 0), frames, size, size)


def test_cascade_keeps_known_keyframes_and_pixels_at_every_stage(tiny_cascade):
  cascade = cascade_lib.Cascade.load(tiny_cascade)
  clip = _clip().astype(np.float32)[None] / 127.5 - 1
  keys = known_lib.keyframes(clip[:, [0, 15]], [0, 15], 16)
  out = cascade.sample(Request(prompts=(PROMPT,), seed=0, known=keys))
  video, stages = video_io.to_uint8(out.video), [video_io.to_uint8(v) for _, v in out.stages]
  truth = video_io.to_uint8(clip)
  for f in (0, 15):  # pasted at the final size, exactly up to rounding
    assert np.abs(video[0, f].astype(int) - truth[0, f]).max() <= 1
  # the base (every other frame, 16x16) saw frame 0 as its frame 0, area-downsampled
  base0 = video_io.to_uint8(clip[0, 0].reshape(16, 4, 16, 4, 3).mean((1, 3)))
  assert np.abs(stages[0][0, 0].astype(int) - base0).max() <= 1
  region = np.zeros((1, 1, 64, 64))
  region[..., 16:48, 16:48] = 1
  out = video_io.to_uint8(cascade.sample(Request(prompts=(PROMPT,), known=known_lib.inpainting(
      clip, region), conditioning="replacement")).video)
  outside = region[0, 0] == 0
  assert np.abs(out[0][:, outside].astype(int) - truth[0][:, outside]).max() <= 1


def test_cascade_re_denoises_an_init_at_every_stage(tiny_cascade):
  cascade = cascade_lib.Cascade.load(tiny_cascade)
  clip = _clip(size=128).astype(np.float32)[None] / 127.5 - 1
  lines = []
  result = cascade.sample(Request(prompts=(PROMPT,), init=clip, start=0.01), log=lines.append)
  video = video_io.to_uint8(result.video)
  for out in (video_io.to_uint8(v) for _, v in result.stages):  # each stage starts from the init at its own frames and size, barely noised
    want = video_io.to_uint8(known_lib.resized(clip, out.shape))
    assert np.abs(out.astype(int) - want).mean() < 3, out.shape
  assert len(lines) == 4 and all("(1 " in line and "from t = 0.01)" in line for line in lines)
  far = video_io.to_uint8(cascade.sample(Request(prompts=(PROMPT,), init=clip, start=0.9)).video)
  assert np.abs(far.astype(int) - video).mean() > 10  # from t = 0.9 little of the init is left


def test_sample_cli_conditions_on_files_and_reports_bad_ones(tiny_cascade, tmp_path):
  from imagen_video.cli import main as cli
  clip = _clip()
  Image.fromarray(clip[0]).save(tmp_path / "first.png")
  Image.fromarray(clip[15]).save(tmp_path / "last.png")
  video_io.write_mp4(tmp_path / "clip.mp4", clip, fps=8)
  mask = np.zeros((64, 64, 3), np.uint8)
  mask[16:48, 16:48] = 255
  Image.fromarray(mask).save(tmp_path / "mask.png")
  root = os.path.dirname(tiny_cascade.stages[0]["workdir"])
  spec = f"{CONFIG}:runlocal,root={root},data_dir={os.path.join(root, 'tfds')}"
  # one stage (the base, 8x16x16, from its workdir alone) takes images ...
  one = ["sample", "--workdir", tiny_cascade.stages[0]["workdir"], "--prompt", PROMPT]
  for name, args in (("i2v", ["--first-frame", str(tmp_path / "first.png")]),
                     ("interp", ["--keyframes", f"{tmp_path}/first.png@0,{tmp_path}/last.png@7"])):
    assert cli.main(one + args + ["--out", str(tmp_path / f"{name}.mp4")]) == 0
    assert video_io.read_video(tmp_path / f"{name}.mp4")[0].shape[:3] == (8, 128, 128)
  # ... the cascade a video and a mask (its known-pixel paths are tested in process above)
  assert cli.main(["sample", "--cascade", spec, "--prompt", PROMPT, "--init-video", str(tmp_path / "clip.mp4"),
                   "--mask", str(tmp_path / "mask.png"), "--conditioning", "replacement",
                   "--out", str(tmp_path / "inpaint.mp4")]) == 0
  assert video_io.read_video(tmp_path / "inpaint.mp4")[0].shape[:3] == (16, 128, 128)
  base = tiny_cascade.stages[0]
  assert cli.main(["sample", "--config", base["config"], "--workdir", base["workdir"],
                   "--prompt", PROMPT, "--init-video", str(tmp_path / "clip.mp4"), "--extend-to", "20",
                   "--refresh", "0.5", "--out", str(tmp_path / "ext.mp4")]) == 0
  assert video_io.read_video(tmp_path / "ext.mp4")[0].shape[0] == 20
  with pytest.raises(SystemExit, match=r"keyframe positions \[0, 8\]: expected distinct indices in \[0, 8\)"):
    cli.main(one + ["--keyframes", f"{tmp_path}/first.png@0,{tmp_path}/last.png@8", "--out", str(tmp_path / "x.mp4")])
  with pytest.raises(SystemExit, match="--first_frame .*nope.png: no such file"):
    cli.main(["sample", "--cascade", spec, "--prompt", PROMPT, "--first-frame",
              str(tmp_path / "nope.png"), "--out", str(tmp_path / "x.mp4")])
  for bad, message in ((["--refresh", "0.5"], "--refresh goes with --extend_to"),
                       (["--init-video", str(tmp_path / "clip.mp4"), "--extend-to", "20", "--refresh", "1"],
                        r"--refresh 1.0: expected a time in \[0, 1\)")):
    with pytest.raises(SystemExit, match=message):
      cli.main(["sample", "--config", base["config"], "--workdir", base["workdir"], "--prompt", PROMPT,
                *bad, "--out", str(tmp_path / "x.mp4")])
  with pytest.raises(SystemExit, match="--mask and --extend_to go with --init_video"):
    cli.main(["sample", "--cascade", spec, "--prompt", PROMPT, "--mask", str(tmp_path / "mask.png"),
              "--out", str(tmp_path / "x.mp4")])


def test_conditional_eval_reports_tasks_and_extension(tiny_cascade, tmp_path, capsys):
  from imagen_video.cli import main as cli
  base = tiny_cascade.stages[0]
  assert cli.main(["eval", "--config", base["config"] + ",wrap=true", "--workdir", base["workdir"],
                   "--metric", "conditional", "--num", "2", "--steps", "2", "--extend", "2",
                   "--sampler", "ancestral", "--refresh", "0.5", "--out_dir", str(tmp_path)]) == 0
  report = json.loads((tmp_path / "conditional.json").read_text())
  assert "ancestral 2 steps" in report["label"] and "refreshed from t = 0.5" in report["label"]
  assert set(report["tasks"]) == {"i2v", "interpolation", "prediction", "inpainting"}
  for r in report["tasks"].values():
    assert set(r["scores"]) == {"baseline", "replacement", "reconstruction"}
    assert all(np.isfinite(r["scores"][k]["psnr"]["mean"]) for k in r["scores"])
  ext = report["extension"]
  r = ext["reconstruction"]
  assert r["trajectory_error_px"] == pytest.approx(np.mean(r["per_clip"])) and ext["replacement"]["context"] == 6
  assert len(ext["replacement"]["per_frame"]) == 16 - 6 and "line_residual_px" in ext["reconstruction"]
  assert ext["reconstruction"]["refresh"] == 0.5 and np.isfinite(ext["reconstruction"]["shape_psnr_db"])
  assert ext["reconstruction"]["refresh_floor"] == 0.5
  assert len(ext["replacement"]["shape_psnr_per_frame"]) == 16 - 6
  md = (tmp_path / "conditional.md").read_text()
  assert "| interpolation |" in md and "| reconstruction |" in md
  for png in ("conditional.png", "extension.png", "extension_error.png"):
    assert (tmp_path / png).stat().st_size > 0
  with pytest.raises(SystemExit):
    cli.main(["eval", "--config", base["config"], "--workdir", base["workdir"], "--metric",
              "conditional", "--sampler", "euler"])
  assert "--sampler=euler: value should be one of <ddim|ancestral|dpm++2m|stochastic>" in \
      capsys.readouterr().err
  for bad, message in ((["--refresh", "1"], "--refresh 1.0: expected a time in"),
                       (["--refresh", "0.5", "--refresh_floor", "2"], "--refresh_floor 2.0: expected a share")):
    with pytest.raises(SystemExit, match=message):
      cli.main(["eval", "--config", base["config"], "--workdir", base["workdir"], "--metric",
                "conditional", *bad])


def test_torus_centroid_and_distance_follow_a_shape_across_the_border():
  from imagen_video.eval import conditional
  clip = ms.Clip("red", "square", "right", 0.2, (0.95, 0.5), (0.5, 0.0), 1.0, wrap=True)
  video = ms.render(clip, 4, 32, 32)[None]
  found = conditional.circular_centroids(video)
  dist = conditional.torus_distance(found[0], clip.centers(4), 32, 32)
  assert dist.max() < 0.5, (found, clip.centers(4))  # the split shape at x = 0.95 is found there
  assert conditional.torus_distance([0.02, 0.5], [0.98, 0.5], 10, 10) == pytest.approx(0.4)


def test_line_residual_is_zero_for_constant_speed_across_the_border_and_not_for_a_zigzag():
  from imagen_video.eval import conditional
  clip = ms.Clip("red", "square", "right", 0.2, (0.9, 0.3), (0.8, 0.4), 1.0, wrap=True)
  assert conditional.line_fit(clip.centers(12), 16, 16)[0] < 1e-4  # wraps in x
  zigzag = clip.centers(12) + np.array([[0.0, 0.05 * (-1) ** i] for i in range(12)])
  assert conditional.line_fit(zigzag % 1.0, 16, 16)[0] == pytest.approx(0.8, rel=0.05)
  # Frames without the shape are left out, not a NaN for the whole track.
  gaps = clip.centers(12).copy()
  gaps[[3, 4, 9]] = np.nan
  assert conditional.line_fit(gaps, 16, 16)[0] < 1e-4
  gaps = zigzag % 1.0
  gaps[[3, 4]] = np.nan
  assert conditional.line_fit(gaps, 16, 16)[0] == pytest.approx(0.8, rel=0.1)
  assert np.isnan(conditional.line_fit(np.full((12, 2), np.nan), 16, 16)[0])


def test_motion_kept_tells_a_slower_track_from_a_turned_one():
  from imagen_video.eval import conditional
  clip = ms.Clip("red", "square", "right", 0.2, (0.9, 0.3), (0.8, 0.4), 1.0, wrap=True)
  true = clip.centers(12)
  slow = ms.Clip("red", "square", "right", 0.2, (0.9, 0.3), (0.4, 0.2), 1.0, wrap=True).centers(12)
  turned = ms.Clip("red", "square", "right", 0.2, (0.9, 0.3), (-0.4, 0.8), 1.0, wrap=True).centers(12)
  m = conditional.motion_kept(np.stack([true, slow, turned]), np.stack([true] * 3), 16, 16)
  assert m["speed_ratio"] == pytest.approx([1.0, 0.5, 1.0], abs=1e-3)
  assert m["direction_error_deg"] == pytest.approx([0.0, 0.0, 90.0], abs=0.1)


def test_prediction_sweep_scores_each_row_against_holding_the_last_frame(tiny_cascade, tmp_path, monkeypatch):
  import sys
  from bench import prediction_sweep
  base = tiny_cascade.stages[0]
  monkeypatch.setattr(sys, "argv", ["prediction_sweep", "--config", base["config"], "--workdir", base["workdir"],
                                    "--rows", "replacement:6:0:1,reconstruction:4:16:1:ancestral:3",
                                    "--num", "2", "--first", "1", "--steps", "2", "--out_dir", str(tmp_path)])
  prediction_sweep.main()
  rows = json.loads((tmp_path / "prediction_sweep.json").read_text())["rows"]
  assert [len(r["per_frame"]) for r in rows] == [2, 4] and all(np.isfinite(r["mean"]) for r in rows)
  assert [len(r["progress_ratio"]) for r in rows] == [2, 4]
  # a row without its own sampler takes the stage config's (the demo base samples ancestrally)
  assert [(r["sampler"], r["steps"]) for r in rows] == [("ancestral", 2), ("ancestral", 3)]
  md = (tmp_path / "prediction_sweep.md").read_text()
  assert "| reconstruction | 4 | 16 | 1 | ancestral 3 |" in md and "held-out clips 1-2" in md
  with pytest.raises(SystemExit, match="METHOD:CONTEXT:RECON_WEIGHT:GUIDANCE"):
    prediction_sweep.parse_rows("recon:4:16:1", "ddim", 2)


def test_progress_ratio_reads_pace_along_the_true_path():
  from bench import prediction_sweep
  to_video = lambda c: ms.render(c, 8, 32, 32)[None].astype(np.float32) / 127.5 - 1
  v = np.array([0.8, 0.4])  # 3.2 px and 1.6 px a frame at 32x32
  truth = to_video(ms.Clip("red", "square", "right", 0.2, (0.9, 0.3), tuple(v), 1.0, wrap=True))
  start3 = tuple(np.array([0.9, 0.3]) + 3 / 8 * v)  # the truth's centre at frame 3
  half = to_video(ms.Clip("red", "square", "right", 0.2, start3, tuple(v / 2), 1.0, wrap=True))
  held = np.concatenate([truth[:, :4], np.repeat(truth[:, 3:4], 4, 1)], 1)
  slow = np.concatenate([truth[:, :4], half[:, 1:5]], 1)  # from frame 3 on at half the speed
  ratio = lambda video: prediction_sweep.progress_ratio(video, truth, 4)
  assert ratio(truth) == pytest.approx([1.0] * 4, abs=0.05)
  assert ratio(held) == pytest.approx([0.0] * 4, abs=1e-6)
  assert ratio(slow) == pytest.approx([0.5] * 4, abs=0.15)


def test_aligned_psnr_scores_the_shape_wherever_it_is_and_not_its_fading():
  from imagen_video.eval import conditional
  clip = ms.Clip("red", "square", "right", 0.25, (0.9, 0.3), (0.8, 0.4), 1.0, wrap=True)
  truth = (ms.render(clip, 6, 16, 16)[None].astype(np.float32) / 127.5 - 1)
  moved = np.roll(truth, (3, -5), axis=(2, 3))  # the right shape in the wrong place
  faded = -1 + 0.3 * (truth + 1)  # the right place, the shape almost gone
  video = np.concatenate([moved, faded])
  found = conditional.circular_centroids(video)
  db = conditional.aligned_psnr(video, np.concatenate([truth, truth]), found,
                                np.stack([clip.centers(6)] * 2))
  assert db[0].min() > 40  # moved back exactly: equal frames
  black = conditional.video_metrics.psnr_per_frame(np.zeros_like(truth), truth * 0.5 + 0.5)
  assert db[1].max() < black.min() + 4  # a faded shape scores near an empty frame


def test_extension_metrics_score_the_truth_perfectly_and_a_frozen_frame_badly():
  """The extension scores on known answers: the true continuation itself (no error, colour and
  shape kept) and the last context frame held (the shape stops: the error grows each frame)."""
  from imagen_video.data import held_out
  import ml_collections
  from imagen_video.eval import conditional
  builder = ml_collections.ConfigDict(dict(frames=8, height=16, width=16, wrap=True, seed=0))
  clips = held_out.extension_clips(builder, 2, 2)
  truth = lambda prompts, known, method, extension=None: clips.video
  held = lambda prompts, known, method, extension=None: np.concatenate(
      [clips.video[:, :6], np.repeat(clips.video[:, 5:6], 10, axis=1)], axis=1)
  perfect = conditional.extension(truth, clips, window=8, context=6, methods=("replacement",),
                                  log=lambda *a: None)["replacement"]
  assert perfect["trajectory_error_px"] < 0.3 and perfect["frames_without_shape"] == 0
  assert perfect["color_kept"] == 1.0 and perfect["shape_psnr_db"] > 40
  frozen = conditional.extension(held, clips, window=8, context=6, methods=("replacement",),
                                 log=lambda *a: None)["replacement"]
  per_frame = np.asarray(frozen["per_frame"])
  assert frozen["trajectory_error_px"] > 1.0 and per_frame[-1] > per_frame[0]
