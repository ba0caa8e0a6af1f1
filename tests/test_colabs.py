"""The Colab notebooks, executed headlessly on tiny settings; their outputs checked."""
import os

import nbformat
import pytest

from imagen_video.media import video_io

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def run_notebook(name: str, params: str, tmp_path) -> nbformat.NotebookNode:
  """Executes colabs/NAME with its `parameters` cell replaced by `params`; saves the
  executed copy in tmp_path (its rendered outputs) and returns it."""
  from nbclient import NotebookClient
  nb = nbformat.read(os.path.join(ROOT, "colabs", name), as_version=4)
  cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
  cells[0].source = params
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": ROOT}}).execute()
  nbformat.write(nb, str(tmp_path / name))
  return nb


def outputs(nb, kind: str) -> list:
  """Every output of the executed notebook with MIME type `kind` (or stream text for 'text')."""
  found = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if kind == "text" and out.output_type == "stream":
        found.append(out.text)
      elif kind in out.get("data", {}):
        found.append(out["data"][kind])
  return found


@pytest.mark.slow
def test_cascade_inference_notebook_shows_every_stage_and_saves_the_mp4(tiny_cascade, tmp_path):
  out = tmp_path / "sample.mp4"
  nb = run_notebook("cascade_inference.ipynb", "\n".join([
      f"CASCADE = {tiny_cascade.stages[0]['config'].replace(',stage=base', '')!r}",
      "PROMPT = 'a green triangle moving right'", "SEED = 1", f"OUT = {str(out)!r}",
      "REPO = ''", f"REPO_DIR = {ROOT!r}"]), tmp_path)
  text = "".join(outputs(nb, "text"))
  for name in ("base", "tsr", "ssr1", "ssr2"):
    assert f"{name:6s} step" in text
  videos = [h for h in outputs(nb, "text/html") if "<video" in h or "<img" in h]
  assert len(videos) == 4  # one inline video per stage
  frames, fps = video_io.read_video(out)
  assert frames.shape == (16, 64, 64, 3) and fps == pytest.approx(8.0)


@pytest.mark.slow
def test_train_tiny_notebook_shows_loss_and_samples_each_round(tmp_path):
  workdir = tmp_path / "base"
  nb = run_notebook("train_tiny.ipynb", "\n".join([
      "CONFIG = 'configs/base_tiny.py:runlocal'", f"WORKDIR = {str(workdir)!r}",
      f"DATA_DIR = {str(tmp_path / 'tfds')!r}", "ROUNDS, STEPS_PER_ROUND = 2, 2",
      "PROMPTS = ['a red circle moving left', 'a blue square moving up']", "SAMPLE_STEPS = 2",
      "REPO = ''", f"REPO_DIR = {ROOT!r}"]), tmp_path)
  assert len(outputs(nb, "image/png")) == 2  # a loss plot per round
  videos = [h for h in outputs(nb, "text/html") if "<video" in h or "<img" in h]
  assert len(videos) == 2 and all(h.count("<video") == 2 for h in videos)  # 2 prompts a round
  assert "final step 4" in "".join(outputs(nb, "text"))
  assert "4" in os.listdir(workdir / "checkpoints")
