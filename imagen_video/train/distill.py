"""Guidance + progressive distillation of one stage, phase after phase, through `train_and_evaluate`.

Phases, each a resumable training run in WORKDIR/<name> (its own config.json, checkpoints):
  guidance    only for guided stages (trained with cond_drop_prob > 0, sampled with guidance
              != 1): a student taking w as an input learns the teacher's guided prediction
              (Meng et al. 2023); it samples with `from_steps` steps, one forward per step.
  steps{N}    one halving (Salimans & Ho 2022): a student with N steps learns in 1 DDIM step
              the previous phase's 2 steps; from_steps/2, ..., to_steps.
Each phase's teacher is the previous phase's workdir (the first's is the trained stage), its
EMA params loaded by the trainer (`config.distill`, see `stage/model.py`). A phase whose
checkpoints reached its train steps is skipped, so re-running the same command resumes.
WORKDIR/distill.json records the phases (seconds, last loss) and the final student.
"""
from __future__ import annotations

import json
import os
import time

import ml_collections
import numpy as np

from imagen_video.train import sweep, trainer


def is_guided(config) -> bool:
  """Trained with condition dropout and sampled with a guidance weight other than 1."""
  g = np.asarray(config.sample.get("guidance", 1.0), np.float32)
  return config.diffusion.get("cond_drop_prob", 0.0) > 0 and bool(np.any(g != 1.0))


def plan(config, from_steps: int, to_steps: int) -> list[dict]:
  """[{name, phase, steps}]: 'guidance' (guided stages) then halvings down to to_steps."""
  ratio = from_steps // to_steps if to_steps > 0 else 0
  if to_steps < 1 or from_steps % to_steps or ratio & (ratio - 1):
    raise ValueError(f"--from-steps {from_steps} / --to-steps {to_steps}: expected a power-of-2 "
                     "ratio (each phase halves the steps)")
  phases = [dict(name="guidance", phase="guidance", steps=from_steps)] if is_guided(config) else []
  n = from_steps
  while n > to_steps:
    n //= 2
    phases.append(dict(name=f"steps{n}", phase="halving", steps=n))
  if not phases:
    raise ValueError(f"nothing to distill: unguided stage and from_steps == to_steps == {to_steps}")
  return phases


def phase_config(config, spec: dict, teacher: str, *, guided: bool, guidance_range, train_steps: int,
                 lr: float, guidance_weighting: str = "truncated_snr"):
  """The stage's config as one phase's training run (student of `teacher`). Halvings weight
  the x0 error by max(1, SNR) (Salimans & Ho); the guidance phase by `guidance_weighting`."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.model.use_guidance_embedding = guided
    c.distill = ml_collections.ConfigDict(dict(
        teacher=os.path.abspath(teacher), phase=spec["phase"], steps=spec["steps"],
        guidance_min=float(guidance_range[0]), guidance_max=float(guidance_range[1]),
        weighting=guidance_weighting if spec["phase"] == "guidance" else "truncated_snr"))
    c.train.steps = train_steps
    c.train.ckpt_every = max(1, train_steps // 5)  # a killed phase loses at most a fifth
    c.train.sample_every = 0
    c.optim.update(dict(lr=lr, schedule="cosine",
                        warmup_steps=min(c.optim.warmup_steps, train_steps // 10)))
    c.sample.steps = spec["steps"]
  return c


def per_phase(train_steps, n: int) -> list[int]:
  """One int for every phase, or one per phase."""
  steps = [int(train_steps)] if np.isscalar(train_steps) else [int(s) for s in train_steps]
  if len(steps) == 1:
    steps *= n
  if len(steps) != n:
    raise ValueError(f"--train-steps has {len(steps)} values; expected 1 or {n} (one per phase)")
  return steps


def distill(config, teacher: str, workdir: str, *, from_steps: int | None = None, to_steps: int = 8,
            guidance_range=(0.0, 6.0), train_steps=500, lr: float = 3e-4,
            guidance_weighting: str = "truncated_snr", log=print) -> dict:
  """Runs (or resumes) every phase; returns the summary written to WORKDIR/distill.json."""
  from_steps = int(from_steps or config.sample.steps)
  phases = plan(config, from_steps, to_steps)
  steps = per_phase(train_steps, len(phases))
  guided = is_guided(config)
  os.makedirs(workdir, exist_ok=True)
  summary_path = os.path.join(workdir, "distill.json")
  done = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      done = {p["name"]: p for p in json.load(f)["phases"]}
  rows, t_start, trained, to_train = [], time.time(), 0, sum(steps)
  for i, (spec, n) in enumerate(zip(phases, steps)):
    wd = os.path.join(workdir, spec["name"])
    head = f"[distill] phase {i + 1}/{len(phases)} {spec['name']}"
    t0 = time.time()
    if any(s >= n for s in sweep.checkpoint_steps(wd)):
      log(f"{head}: finished already ({wd}), skipped")
      row = done.get(spec["name"], {})
    else:
      what = ("guidance weight as input" if spec["phase"] == "guidance"
              else f"{2 * spec['steps']} -> {spec['steps']} DDIM steps")
      log(f"{head}: {what}, teacher {teacher}, {n} train steps -> {wd}")
      c = phase_config(config, spec, teacher, guided=guided, guidance_range=guidance_range,
                       train_steps=n, lr=lr, guidance_weighting=guidance_weighting)
      trainer.train_and_evaluate(c, wd)
      row = {"seconds": round(time.time() - t0, 1)}
      trained += n
      rate = (time.time() - t_start) / trained
      log(f"{head}: done in {row['seconds']:.0f} s, last loss {sweep.last_loss(wd):.4g}; "
          f"ETA of the rest {(to_train - sum(steps[:i + 1])) * rate / 60:.1f} min")
    rows.append(dict(row, name=spec["name"], phase=spec["phase"], steps=spec["steps"],
                     train_steps=n, teacher=os.path.abspath(teacher), workdir=os.path.abspath(wd),
                     last_loss=sweep.last_loss(wd)))
    teacher = wd
  summary = {"student": os.path.abspath(teacher), "steps": phases[-1]["steps"],
             "guidance_input": guided, "phases": rows}
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=2)
  log(f"[distill] final student: {summary['student']} ({summary['steps']} DDIM steps"
      f"{', guidance weight as input' if guided else ''}); a cascade stage samples it with "
      f"workdir={summary['student']} steps={summary['steps']}")
  return summary
