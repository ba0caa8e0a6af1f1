"""imagen-video demo [--workdir demo] [--prompts N]

The main job on built-in defaults: prepares `moving_shapes`, trains every stage
of the tiny cascade (configs/cascade_tiny.py: base 8x16x16 -> TSR 16x16x16 ->
SSR 16x32x32 -> SSR 16x64x64), samples prompts through the cascade, and writes
mp4s and a contact sheet (one row per stage) into WORKDIR/samples. Finished
stages are reused when re-run (an interrupted one resumes); a stage trained with another
network, diffusion or stage config (an older demo's) is moved aside and trained again. Afterwards:

    imagen-video sample --cascade configs/cascade_tiny.py:root=WORKDIR/stages,data_dir=WORKDIR/tensorflow_datasets \\
        --prompt "a cyan square moving down" --out cyan.mp4
"""
from __future__ import annotations

import os
import time

from absl import flags

from imagen_video.cli import flags_util

PROMPTS = ("a red circle moving left", "a green square moving up", "a blue triangle moving right",
           "a yellow circle moving down", "a magenta square moving left", "a cyan triangle moving up",
           "a white circle moving right", "a red square moving down")


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags.DEFINE_string("workdir", "demo", "where the datasets, stages and samples go", flag_values=fv)
  flags.DEFINE_integer("prompts", 4, "how many built-in prompts to sample", flag_values=fv)
  flags.DEFINE_string("config_args", "", "extra cascade_tiny.py arguments (e.g. runlocal)", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  run(fv.workdir, PROMPTS[:fv.prompts], fv.config_args)
  return 0


def cascade_spec(workdir: str, extra: str = "") -> str:
  args = f"root={workdir}/stages,data_dir={workdir}/tensorflow_datasets" + (f",{extra}" if extra else "")
  return f"configs/cascade_tiny.py:{args}"


def _stale(workdir: str, config) -> str:
  """What differs between the config a stage's workdir was trained with and `config`, in
  the fields that give its params their meaning ('' when nothing does, or no stage is there)."""
  from imagen_video.stage import loading
  from imagen_video.workdir import saved_config
  saved = saved_config.read(workdir)
  if saved is None:
    return ""
  differ = loading.disagreements(saved, config.copy_and_resolve_references())
  return "; ".join(f"{k} {a!r} -> {b!r}" for k, a, b in differ[:4]) + (" ..." if len(differ) > 4 else "")


def run(workdir: str, prompts, extra: str = "") -> dict:
  from imagen_video.cascade.cascade import Cascade
  from imagen_video.cli import sample as sample_cli
  from imagen_video.stage.sampler import Request
  from imagen_video.train import trainer
  from imagen_video.utils import configs_loader
  from imagen_video.workdir import checkpoints

  start = time.time()
  spec = cascade_spec(workdir, extra)
  cascade = configs_loader.load(spec)
  n = len(cascade.stages)
  for i, entry in enumerate(cascade.stages, 1):
    config = configs_loader.load(entry["config"])
    stale = _stale(entry["workdir"], config)
    if stale:  # a stage of an older demo: kept aside, not overwritten, and trained anew
      kept = f"{entry['workdir']}.old-{time.strftime('%Y%m%d-%H%M%S')}"
      os.rename(entry["workdir"], kept)
      print(f"[demo {i}/{n}] stage {entry['name']}: trained with another config ({stale}); "
            f"moved to {kept}, training it again", flush=True)
    done = checkpoints.Checkpoints(os.path.join(entry["workdir"], "checkpoints"),
                                     async_save=False).latest_step()
    if done is not None and done >= config.train.steps:
      print(f"[demo {i}/{n}] stage {entry['name']}: already trained ({done} steps), reusing", flush=True)
      continue
    print(f"[demo {i}/{n}] training stage {entry['name']} ({config.train.steps} steps) "
          f"in {entry['workdir']}  [{time.time() - start:.0f} s so far]", flush=True)
    trainer.train_and_evaluate(config, entry["workdir"])
  print(f"[demo] sampling {len(prompts)} prompts through the cascade  [{time.time() - start:.0f} s]",
        flush=True)
  sampler = Cascade.load(cascade)
  out_dir = os.path.join(workdir, "samples")
  sample_cli.write(sampler, list(prompts), Request(), num=1, seed=0,
                   fps=sampler.config.sample.get("fps", 8.0), out_dir=out_dir)
  seconds = time.time() - start
  print(f"[demo] done in {seconds / 60:.1f} min: {out_dir}/contact_sheet.png, {out_dir}/*.mp4\n"
        f"sample more with:\n  imagen-video sample --cascade {spec} --prompt \"a cyan square moving down\" "
        f"--out cyan.mp4", flush=True)
  return {"seconds": seconds, "out_dir": out_dir}
