"""The paper cascade config: U-Net sizes match the paper (shapes only, nothing allocated)."""
import contextlib
import io

import pytest

from imagen_video.cli import describe
from imagen_video.utils import configs_loader

CASCADE = "configs/imagen_video_paper.py"
# Imagen Video, Table/Sec. 2.5: (name, params, frames, height, width, fps).
PAPER = [("base", 5.6e9, 16, 24, 40, 3), ("tsr1", 1.7e9, 32, 24, 40, 6), ("ssr1", 1.4e9, 32, 48, 80, 6),
         ("ssr2", 1.2e9, 32, 192, 320, 6), ("tsr2", 780e6, 64, 192, 320, 12),
         ("tsr3", 630e6, 128, 192, 320, 24), ("ssr3", 340e6, 128, 768, 1280, 24)]


@pytest.fixture(scope="module")
def output():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert describe.main(["imagen-video describe", "--cascade", CASCADE]) == 0
  return out.getvalue()


def test_unet_params_match_paper(output):
  rows = {r["name"]: r for r in describe.cascade_rows(CASCADE)[0]}  # cached by the describe run
  assert list(rows) == [p[0] for p in PAPER]
  for name, params, frames, height, width, _ in PAPER:
    assert abs(rows[name]["params"] / params - 1) < 0.10, (name, rows[name]["params"])
    assert rows[name]["output"] == f"{frames}x{height}x{width}"


def test_describe_lists_every_stage_and_t5(output):
  lines = output.splitlines()
  for name, *_ in PAPER:
    assert any(line.split()[:1] == [name] for line in lines), name
  assert "4.76B" in output and "4.63B" in output and "131.6M" in output


def test_stage_configs():
  cascade = configs_loader.load(CASCADE)
  assert [s["name"] for s in cascade.stages] == [p[0] for p in PAPER]
  assert cascade.stages[0]["guidance"]["kind"] == "oscillating"
  for (name, _, frames, height, width, fps), prev in zip(PAPER, [None] + PAPER[:-1]):
    c = configs_loader.load(f"{CASCADE}:stage={name}")
    assert (c.data.builder.frames, c.data.builder.height, c.data.builder.width, c.data.builder.fps) == (
        frames, height, width, fps)
    # the high-res, temporally convolutional stages train on 16-frame windows
    assert c.data.frames == (16 if height >= 192 else frames)
    assert c.text.preset == "xxl" and c.diffusion.objective == "v"
    assert c.model.dtype == "bfloat16" and c.model.param_dtype == "float32"
    assert c.model.temporal_mixing == ("attention" if name == "base" else "conv")
    if prev is None:
      assert c.stage.kind == "base"
    else:
      assert c.stage.kind == ("tsr" if frames > prev[2] else "ssr")
      assert tuple(c.stage.low_res) == tuple(prev[2:5])
      assert f"video_{prev[2]}x{prev[3]}x{prev[4]}" in c.data.low_res_keys
  last = configs_loader.load(f"{CASCADE}:stage=ssr3")
  assert last.model.attn_resolutions == () and not last.model.mid_spatial_attn and last.data.crop
