"""`imagen-video prepare | preview | demo` on tiny settings."""
import os

import numpy as np
import pytest
from PIL import Image

from imagen_video.cli import main as cli

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "moving_shapes.py")


def test_unknown_command_suggests_the_closest(capsys):
  assert cli.main(["prepair"]) == 2
  assert "did you mean `prepare`" in capsys.readouterr().err


def test_prepare_then_preview(tmp_path, capsys):
  spec = f"{CONFIG}:runlocal,frames=8,height=16,width=16"
  assert cli.main(["prepare", "--config", spec, "--data_dir", str(tmp_path / "tfds")]) == 0
  assert "{'train': 64, 'test': 16}" in capsys.readouterr().out
  out = tmp_path / "preview"
  assert cli.main(["preview", "--config", spec, f"--config.data.data_dir={tmp_path / 'tfds'}",
                   "--out_dir", str(out), "--num", "4"]) == 0
  sheet = np.asarray(Image.open(out / "contact_sheet.png"))
  assert sheet.ndim == 3 and sheet.shape[0] > 4 * 16  # four rows of enlarged frames + captions
  from imagen_video.media import video_io
  frames, fps = video_io.read_video(str(out / "preview.mp4"))
  assert frames.shape[0] == 8 and fps == pytest.approx(8.0)


def test_config_argument_errors_name_the_argument():
  from imagen_video.utils import configs_loader
  with pytest.raises(ValueError, match="'frame' is unknown"):
    configs_loader.load(f"{CONFIG}:frame=3")


def test_a_bad_config_argument_on_the_command_line_is_one_line(capsys):
  from imagen_video.cli import main as cli
  base_tiny = os.path.join(os.path.dirname(__file__), "..", "configs", "base_tiny.py")
  with pytest.raises(SystemExit):
    cli.main(["train", "--config", f"{base_tiny}:steps=abc", "--workdir", "unused"])
  err = capsys.readouterr().err
  assert err.splitlines()[0].endswith("base_tiny.py:steps=abc: config argument steps='abc': expected "
                                      "an integer (default 3000)") and "Traceback" not in err


def test_unknown_config_field_is_rejected_with_a_suggestion(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(["prepare", "--config", f"{CONFIG}:runlocal", "--config.data.batch_sise=3"])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert "batch_sise" in err and 'Did you mean "batch_size"' in err
