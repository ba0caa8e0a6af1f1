"""Evaluators by name, as big_vision lists them: `imagen-video eval --metric NAME` and a
training config's `evals` both build one here.

    ev = registry.build("caption", num=2)        # options: the evaluator's dataclass fields
    result = ev.run(sampler, out_dir)             # a StageSampler or a Cascade; writes the report

An evaluator is a dataclass registered under its name (`@register`); its fields are its
options, each with a help text (`option`): the CLI makes a flag of each, a config names them.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import ClassVar

# name -> module that registers it (imported on first use, so `eval --help` stays light)
MODULES = {
    "caption": "imagen_video.eval.prompt_following",
    "fvd": "imagen_video.eval.fvd",
    "clip_score": "imagen_video.eval.clip_score",
    "sr_psnr": "imagen_video.eval.sr_psnr",
    "text_probe": "imagen_video.eval.text_probe",
    "conditional": "imagen_video.eval.conditional",
    "pose": "imagen_video.eval.pose_eval",
}
_REGISTRY: dict[str, type] = {}


def option(default, help: str):  # noqa: A002 (the flag's help)
  return dataclasses.field(default=default, metadata={"help": help})


class Evaluator:
  name: ClassVar[str]
  targets: ClassVar[tuple[str, ...]] = ("stage", "cascade")  # what it can measure

  def run(self, sampler, out_dir: str, log=print) -> dict:
    raise NotImplementedError

  def scalars(self, result) -> dict[str, float]:
    """The headline figures of a result (logged during training)."""
    return {}


def register(name: str):
  def wrap(cls):
    cls.name = name
    _REGISTRY[name] = cls
    return cls
  return wrap


def names() -> list[str]:
  return list(MODULES)


def get(name: str) -> type:
  if name not in MODULES:
    raise ValueError(f"evaluator {name!r}: expected one of {names()}")
  importlib.import_module(MODULES[name])
  return _REGISTRY[name]


def build(name: str, **options) -> Evaluator:
  """The evaluator `name` with `options` (unknown ones are refused, naming the known)."""
  cls = get(name)
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(options) - fields)
  if unknown:
    raise ValueError(f"evaluator {name!r}: unknown option(s) {unknown}; it takes {sorted(fields)}")
  return cls(**options)


def describe(sampler) -> str:
  """A report's label: what was sampled, from where, with which settings."""
  runs = getattr(sampler, "runs", None)
  if runs:
    return "cascade " + " -> ".join(f"{r.name} (step {r.step}, {r.defaults.sampler} {r.defaults.steps})"
                                    for r in runs)
  d = sampler.defaults
  weight = d.guidance if isinstance(d.guidance, (int, float)) else "schedule"
  return f"{sampler.name} step {sampler.step}, EMA, {d.sampler} {d.steps} steps, guidance {weight}"
