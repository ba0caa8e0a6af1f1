"""imagen-video ablate --ablation NAME[,NAME...]|all --root DIR [--args steps=1000,sr_steps=400]

Runs the papers' ablations of configs/ablations.py at small scale on
`moving_shapes`: trains each variant (ROOT/runs/VARIANT, reused when already
trained), measures it and writes ROOT/reports/NAME/{report.md, report.json,
metrics.png, samples.png}. --args go to the ablation config (steps, sr_steps:
training budgets; runlocal=true: seconds-long smoke run).
"""
from __future__ import annotations

import time

from absl import flags

from imagen_video.cli import flags_util


def main(argv: list[str]) -> int:
  from imagen_video.utils import configs_loader
  fv = flags.FlagValues()
  flags.DEFINE_string("ablation", None, "ablation name(s), comma-separated, or 'all'", flag_values=fv)
  flags.DEFINE_string("root", "workdirs/ablations", "runs and reports go under this folder",
                      flag_values=fv)
  flags.DEFINE_string("data_dir", None, "TFDS dir (default ROOT/tensorflow_datasets)", flag_values=fv)
  flags.DEFINE_string("args", "", "arguments of configs/ablations.py (e.g. steps=500)", flag_values=fv)
  flags.DEFINE_string("clip", None, "CLIP checkpoint (`imagen-video convert-clip`): adds CLIP score and "
                      "R-Precision of the caption-check samples to base/guidance reports", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  module = configs_loader.load_module("configs/ablations.py")
  if not fv.ablation:
    raise SystemExit(f"{argv[0]}: --ablation is required: one or more of {', '.join(module.ABLATIONS)}, "
                     "or all")
  names = list(module.ABLATIONS) if fv.ablation == "all" else fv.ablation.split(",")
  unknown = [n for n in names if n not in module.ABLATIONS]
  if unknown:
    raise SystemExit(f"{argv[0]}: unknown ablation(s) {unknown}; expected {', '.join(module.ABLATIONS)}")
  from imagen_video.train import ablation
  t0 = time.time()
  for i, name in enumerate(names):
    spec = module.get_config(",".join(filter(None, [f"name={name}", fv.args])))
    print(f"[ablate] {i + 1}/{len(names)} {name}: {spec.title} "
          f"({time.time() - t0:.0f} s elapsed)", flush=True)
    ablation.run(spec, fv.root, data_dir=fv.data_dir, clip=fv.clip)
  return 0
