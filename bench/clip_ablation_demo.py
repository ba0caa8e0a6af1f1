"""The guidance ablation's report with CLIP columns, at tiny scale: a trained tiny cascade's
base stage as the `reference` run, a randomly initialised small CLIP (plumbing, not quality).

    python -m bench.clip_ablation_demo TINY_CASCADE_ROOT OUT_DIR    # report: OUT_DIR/reports/guidance/

TINY_CASCADE_ROOT: `configs/cascade_tiny.py:runlocal,root=R,data_dir=R/tfds` trained (as
tests/conftest.py's tiny_cascade does).
"""
import os
import sys

from imagen_video.clip import checkpoint
from imagen_video.clip.model import ClipConfig
from imagen_video.eval import prompt_following
from imagen_video.train import ablation
from imagen_video.utils import configs_loader

R = sys.argv[1]  # a trained tiny cascade root (tests/conftest.py's tiny_cascade)
out = sys.argv[2]
A = configs_loader.load_module("configs/ablations.py")
spec = A.get_config("name=guidance,runlocal=true")
spec.train_config = f"configs/cascade_tiny.py:stage=base,runlocal,root={R},data_dir={R}/tfds"
spec.steps = 1  # reuse the trained run
spec.settings = [s for s in spec.settings if s["name"] in ("w1", "w10", "osc10")]
os.makedirs(os.path.join(out, "runs"), exist_ok=True)
if not os.path.exists(os.path.join(out, "runs", "reference")):
  os.symlink(os.path.join(R, "base"), os.path.join(out, "runs", "reference"))
cfg = ClipConfig(image_size=64, patch_size=16, vision_width=128, vision_mlp=256, vision_layers=2, vision_heads=4,
                 text_width=128, text_mlp=256, text_layers=2, text_heads=4, text_length=32, projection_dim=64)
clip = checkpoint.save_random(os.path.join(out, "random_clip"), cfg,
                              prompt_following.grammar_prompts(spec.eval.caption_num), merges=100)
ablation.run(spec, out, clip=clip)
