"""imagen-video describe --cascade configs/imagen_video_paper.py
   imagen-video describe --config configs/imagen_video_paper.py:stage=base

Prints one row per stage: kind, output frames x H x W, fps, temporal mixing,
U-Net levels with spatial attention, U-Net parameters (from nnx.eval_shape:
nothing is allocated, so paper-size cascades describe in seconds on a laptop),
the paper's count where the config module has one (`BY_NAME[name].paper`), and
their ratio; then the text encoder's parameter count.
"""
from __future__ import annotations

import functools
import math

from absl import flags

from imagen_video.cli import flags_util


def unet_params(config) -> int:
  """U-Net parameter count of a stage config, as `Stage` builds it (no allocation)."""
  import jax
  from imagen_video.nn import unet
  from imagen_video.stage import conditioning
  model = config.model.copy_and_resolve_references()
  with model.unlocked():
    model.cond_channels = conditioning.cond_channels(config)
    model.use_aug_level_embedding = conditioning.uses_aug_level(config)
  _, state = unet.abstract_unet(model)
  return sum(math.prod(x.shape) for x in jax.tree.leaves(state))


def attention_levels(model) -> str:
  """Nominal frame heights of the levels with spatial self-attention (e.g. '12,6,3')."""
  levels = [model.resolution // 2 ** i for i in range(len(model.channel_mults))]
  attn = [str(r) for r in levels if r in tuple(model.attn_resolutions)]
  return ",".join(attn) or "none"


def stage_row(name: str, config, paper: float | None) -> dict:
  from imagen_video.data.batch import clip_shape
  b = config.data.builder
  n = unet_params(config)
  return dict(name=name, kind=config.stage.kind, output="x".join(map(str, clip_shape(config, 1)[1:4])),
              fps=f"{b.get('fps', 0):g}", temporal=config.model.temporal_mixing,
              attention=attention_levels(config.model), params=n, paper=paper,
              ratio=(n / paper) if paper else None)


def _human(n: float | None) -> str:
  if n is None:
    return "-"
  return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def format_table(rows: list[dict]) -> str:
  cols = [("stage", "name"), ("kind", "kind"), ("output TxHxW", "output"), ("fps", "fps"),
          ("temporal", "temporal"), ("spatial attn at", "attention"), ("U-Net params", "params"),
          ("paper", "paper"), ("ratio", "ratio")]
  cells = [[str(r[k]) if k not in ("params", "paper", "ratio") else
            (_human(r[k]) if k != "ratio" else ("-" if r[k] is None else f"{r[k]:.3f}")) for _, k in cols]
           for r in rows]
  widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(cols)]
  line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
  return "\n".join([line([h for h, _ in cols]), line(["-" * w for w in widths])] + [line(c) for c in cells])


def text_encoder_line(text) -> str:
  from imagen_video.text import t5
  cfg = t5.preset(text.variant, text.preset)
  n = t5.count_params(cfg)
  return (f"text encoder T5 {text.variant}/{text.preset} (d_model {cfg.d_model}, {cfg.num_layers} layers, "
          f"{'frozen' if text.frozen else 'trained'}): {_human(n['total'])} params incl. the "
          f"{n['embedding'] / 1e6:.1f}M embedding, {_human(n['non_embedding'])} without")


@functools.lru_cache(maxsize=8)
def cascade_rows(spec: str) -> tuple[tuple[dict, ...], object]:
  """(one row per stage, the first stage's text config) of a cascade config file
  (its `get_config()` lists `stages`); cached: tracing paper-size U-Nets takes seconds."""
  from imagen_video.utils import configs_loader
  path, _ = configs_loader.resolve(spec)
  module = _load_module(path)
  rows, text = [], None
  for s in module.get_config().stages:
    config = configs_loader.load(s["config"])
    paper = getattr(getattr(module, "BY_NAME", {}).get(s["name"]), "paper", None)
    rows.append(stage_row(s["name"], config, paper))
    text = text or config.text
  return tuple(rows), text


def describe_cascade(spec: str) -> str:
  rows, text = cascade_rows(spec)
  total = sum(r["params"] for r in rows)
  out = [format_table(rows), f"cascade U-Nets: {total / 1e9:.2f}B params in {len(rows)} stages"]
  if text is not None:
    out.append(text_encoder_line(text))
  return "\n".join(out)


def _load_module(path: str):
  import importlib.util
  spec = importlib.util.spec_from_file_location(f"_cascade_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags.DEFINE_string("cascade", None, "cascade config file (get_config() lists `stages`)", flag_values=fv)
  flags_util.define_config(fv, argv)
  flags_util.parse(fv, argv, __doc__)
  if bool(fv.cascade) == bool(fv.config):
    raise SystemExit(f"{argv[0]}: give exactly one of --cascade and --config")
  if fv.cascade:
    print(describe_cascade(fv.cascade))
  else:
    print(format_table([stage_row("stage", fv.config, None)]))
    print(text_encoder_line(fv.config.text))
  return 0
