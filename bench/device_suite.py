"""One device benchmark, one table: the base U-Net's train step at three widths with its MFU,
an attention kernel against XLA's, the guided sampler's ms per step, the tiny cascade sampled whole.

    python -m bench.device_suite                   # a GPU or TPU machine: under 8 minutes
    python -m bench.device_suite --cpu             # tiny shapes on CPU (tests/test_device_suite.py)
    python -m bench.device_suite --widths 64,128,256 --batch 16 --json out.json

Rows (each also in the JSON file, --json):
  train      the trainer's step (fwd + bwd + AdamW + EMA, `_jax_unet.TrainBench`) computing in
             bf16; batch: the largest power of two whose compiled step fits in --fill of the
             device's memory (XLA's memory analysis of a batch --probe compile), or --batch
  attention  the middle width again with attention_backend='auto': cuDNN flash attention (GPU)
             or splash (TPU) wherever it takes the call
  sampler    guided DDIM (`StageSampler.draw`: one forward on 2B per step)
  cascade    configs/cascade_tiny.py's four stages (--cpu: its runlocal ones) with random
             weights (sampling time does not depend on them), text given as embeddings
TFLOP/s and MFU are per device: XLA's FLOPs of the compiled program (utils/mfu.py) over the
median measured time, against the chip's dense bf16 peak (CPU: a measured fp32 matmul peak).
A row that fails (a kernel this device lacks) says so and the suite goes on; rows left when
--budget_s has passed are skipped. Only public JAX APIs that JAX 0.10 and later share.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from bench import _jax_unet
from bench._timing import markdown_table, median_time
from imagen_video.utils import chips, mfu

COLUMNS = ("part", "model", "batch", "dtype", "attention", "time", "TFLOP/s/device", "MFU", "note")
KERNEL = {"gpu": "cudnn", "tpu": "splash"}  # the attention kernel compared with XLA's per platform


def parse_args(argv=None) -> argparse.Namespace:
  ints = lambda s: tuple(int(v) for v in s.split(","))
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (the test suite's run)")
  p.add_argument("--widths", type=ints, default=(64, 128, 256), help="level-0 channels, three")
  p.add_argument("--batch", type=int, default=0, help="train batch (0: fill the device)")
  p.add_argument("--fill", type=float, default=0.6, help="share of device memory for the train step")
  p.add_argument("--probe", type=int, default=4, help="batch of the compile that sizes the batch")
  p.add_argument("--max_batch", type=int, default=256)
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--size", type=int, default=64, help="frame height = width")
  p.add_argument("--mults", type=ints, default=(1, 2, 4))
  p.add_argument("--blocks", type=ints, default=(2, 2, 2))
  p.add_argument("--heads", type=int, default=8)
  p.add_argument("--head_dim", type=int, default=64)
  p.add_argument("--text_dim", type=int, default=4096, help="T5-XXL's width")
  p.add_argument("--text_len", type=int, default=64)
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--sample_batch", type=int, default=8)
  p.add_argument("--sample_steps", type=int, default=16)
  p.add_argument("--cascade_batch", type=int, default=4)
  p.add_argument("--cascade_steps", default="", help="per stage, e.g. 64/16/16/16 (default: the config's)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--budget_s", type=float, default=420.0, help="skip the rows left after this")
  p.add_argument("--json", default="device_suite.json", help="where the table goes as JSON")
  a = p.parse_args(argv)
  if a.cpu:  # seconds per row on 2 cores: one level, tiny clips, fp32 (bf16 is emulated on CPU)
    a.widths, a.batch, a.frames, a.size, a.mults, a.blocks = (8, 16, 24), a.batch or 2, 4, 16, (1,), (1,)
    a.heads, a.head_dim, a.text_dim, a.text_len, a.dtype = 2, 8, 32, 4, "float32"
    a.sample_batch, a.sample_steps, a.cascade_batch, a.cascade_steps = 1, 2, 1, "2/2/2/2"
    a.repeats = 1
  if len(a.widths) != 3:
    raise SystemExit(f"--widths {a.widths}: expected three")
  return a


def _row(part, model, batch, dtype, backend, seconds, per, flops=None, peak=None, note="") -> dict:
  """One table row; `flops` per device for one `per` (step, sampler step, cascade call)."""
  speed = mfu.throughput(flops, seconds, peak)
  return dict(part=part, model=model, batch=batch, dtype=dtype, attention=backend,
              ms=1e3 * seconds, per=per, flops_per_device=flops,
              tflops_per_device=speed.get("tflops_per_device"),
              mfu=speed.get("mfu"), note=note)


def _stage(a, width, backend):
  config = _jax_unet.stage_config(width, size=a.size, text_dim=a.text_dim, mults=a.mults,
                                  blocks=a.blocks, heads=a.heads, head_dim=a.head_dim,
                                  dtype=a.dtype, attention_backend=backend)
  return _jax_unet.make_stage(config, a.text_dim)


def _train_bench(a, stage, batch):
  data = _jax_unet.random_batch(jax.random.key(0), batch=batch, frames=a.frames, size=a.size,
                                text_dim=a.text_dim, text_len=a.text_len)
  return _jax_unet.TrainBench(stage, data, params=_jax_unet.host_params(stage.abstract_params))


def _memory_limit() -> float | None:
  device = jax.devices()[0]
  try:
    limit = (device.memory_stats() or {}).get("bytes_limit")
  except Exception:  # CPU and some backends have no memory stats
    limit = None
  chip = chips.for_kind(device.device_kind)
  return limit or (chip.hbm_gib * 2 ** 30 if chip else None)


def fill_batch(a, stage) -> int:
  """The largest power of two whose step fits in a.fill of the device's memory: what a batch
  a.probe compile needs beyond the train state, scaled per example."""
  limit = _memory_limit()
  if a.batch or limit is None:
    return a.batch or a.probe
  probe = _train_bench(a, stage, a.probe)
  m = probe.compiled.memory_analysis()
  total = m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
  state = sum(x.nbytes for x in jax.tree.leaves(probe.state))
  return largest_batch(state, max(total - state, 1) / a.probe, a.fill * limit, a.max_batch)


def largest_batch(fixed: float, per_example: float, budget: float, max_batch: int) -> int:
  """The largest power of two b <= max_batch with fixed + b * per_example <= budget (at least 1)."""
  batch = 1
  while 2 * batch <= max_batch and fixed + 2 * batch * per_example <= budget:
    batch *= 2
  return batch


def compile_width(a, width) -> dict:
  """{'stage', 'batch', 'xla': TrainBench} at `width` with the batch that fills the device; the
  middle width also under this platform's attention kernel (or why not), at the same batch."""
  stage = _stage(a, width, "xla")
  batch = fill_batch(a, stage)
  out = {"stage": stage, "batch": batch, "xla": _train_bench(a, stage, batch)}
  if width == a.widths[1]:
    platform = jax.devices()[0].platform
    kernel = KERNEL.get(platform)
    if kernel is None:
      out["kernel"] = f"no attention kernel to compare on {platform}"
    else:  # 'auto': the kernel for every call it takes, XLA for the rest (e.g. T5's bias on TPU)
      try:
        out[kernel] = _train_bench(a, _stage(a, width, "auto"), batch)
        out["kernel"] = kernel
      except Exception as e:  # reported in its row
        out["kernel"] = f"{kernel} failed: {type(e).__name__}: {str(e)[:100]}"
  return out


def train_row(a, peak, width, compiled: dict):
  tb = compiled["xla"]
  t = compiled["seconds"] = median_time(tb.step, repeats=a.repeats)
  return _row("train", f"ch {width}, {tb.params / 1e6:.3g}M params", compiled["batch"], a.dtype,
              "xla", t, "step", tb.flops, peak)


def attention_row(a, peak, compiled: dict):
  kernel, width, batch = compiled["kernel"], a.widths[1], compiled["batch"]
  if kernel not in compiled:
    return _empty("attention", f"ch {width}", kernel)
  tb = compiled[kernel]
  t = median_time(tb.step, repeats=a.repeats)
  # XLA's cost analysis does not see inside a custom kernel: the model's FLOPs are the xla step's.
  return _row("attention", f"ch {width}", batch, a.dtype, f"auto ({kernel})", t, "step",
              compiled["xla"].flops, peak, note=f"{compiled['seconds'] / t:.2f}x xla's step; "
              f"XLA counts {tb.flops / compiled['xla'].flops:.0%} of its FLOPs")


def prepare_sampler(a):
  """The guided sampler at the middle width (random weights), compiled by a warm-up run."""
  stage = _stage(a, a.widths[1], "xla")
  data = _jax_unet.random_batch(jax.random.key(1), batch=a.sample_batch, frames=a.frames, size=a.size,
                                text_dim=a.text_dim, text_len=a.text_len)
  sb = _jax_unet.SampleBench(stage, _jax_unet.host_params(stage.abstract_params), data)
  sb.run(a.sample_steps)
  return sb


def sampler_row(a, sb):
  for _ in range(a.repeats):
    sb.run(a.sample_steps)
  runs = sb.sampler.timings[-a.repeats:]  # each run's own time, its host transfers excluded
  step_s = statistics.median(r.run_s for r in runs) / a.sample_steps
  return _row("sampler", f"ch {a.widths[1]}, guided DDIM x{a.sample_steps}", a.sample_batch, a.dtype,
              "xla", step_s, "sampler step", runs[-1].flops_per_step, runs[-1].peak)


def tiny_cascade(a):
  """configs/cascade_tiny.py's stages with random weights; (cascade, text embeddings)."""
  from imagen_video.cascade.cascade import Cascade
  from imagen_video.stage.model import Stage
  from imagen_video.stage.sampler import Defaults, StageSampler
  from imagen_video.utils import configs_loader
  args = ",".join((["runlocal"] if a.cpu else []) + ([f"sample_steps={a.cascade_steps}"] if a.cascade_steps else []))
  listing = configs_loader.load("cascade_tiny.py" + (f":{args}" if args else ""))
  runs = []
  for i, entry in enumerate(listing.stages):
    config = configs_loader.load(entry["config"])
    config.text.tokenizer = ""  # text comes as embeddings: no prepared dataset needed
    stage = Stage(config, text_encoder=runs[0].stage.text if runs else None)  # one T5, as in Cascade.load
    defaults = Defaults.from_config(config, **{k: entry[k] for k in ("steps", "sampler", "guidance", "aug_level")})
    runs.append(StageSampler(stage, {"unet": _jax_unet.host_params(stage.abstract_params, i)},
                             defaults=defaults, name=entry["name"]))
  text = runs[0].stage.text
  length = runs[0].config.text.max_length
  emb = jax.random.normal(jax.random.key(9), (a.cascade_batch, length, text.d_model), jnp.float32)
  return Cascade(runs), (emb, jnp.ones((a.cascade_batch, length), bool))


def prepare_cascade(a):
  """(cascade, request): the tiny cascade, every stage's sampler compiled by a warm-up run."""
  from imagen_video.stage.sampler import Request
  cascade, text = tiny_cascade(a)
  request = Request(text=text, seed=0)
  cascade.sample(request, log=lambda line: None)
  return cascade, request


def cascade_row(a, peak, prepared):
  cascade, request = prepared
  t = median_time(lambda: cascade.sample(request, log=lambda line: None), repeats=a.repeats, warmup=0)
  last = [run.timings[-1] for run in cascade.runs]
  flops = None if any(x.flops_per_step is None for x in last) else sum(x.flops_per_step * x.steps for x in last)
  steps = "/".join(str(x.steps) for x in last)
  note = ", ".join(f"{run.name} {x.ms_per_step:.1f} ms/step" for run, x in zip(cascade.runs, last))
  return _row("cascade", f"tiny cascade, {steps} steps", a.cascade_batch,
              cascade.runs[0].stage.model_config.dtype, "xla", t, "sample", flops, peak, note=note)


def _logged(row: dict, t0: float) -> dict:
  """`row` with the wall seconds its measuring took, reported as it comes."""
  row["seconds"] = round(time.time() - t0, 1)
  print(f"[device_suite] {row['part']} {row['model']}: {row['seconds']} s", file=sys.stderr, flush=True)
  return row


def _empty(part, model="", note="", attention=""):
  """A row without measurements (skipped, failed, nothing to compare)."""
  return dict(part=part, model=model, batch=0, dtype="", attention=attention, ms=None, per="",
              flops_per_device=None, tflops_per_device=None, mfu=None, note=note)


def _skipped(part, model=""):
  return _empty(part, model, "skipped: past --budget_s")


def _guarded(part, fn):
  t0 = time.time()
  try:
    row = fn()
  except Exception as e:  # a kernel or shape this device lacks: reported, the suite goes on
    print(f"{part} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    row = _empty(part, note=f"failed: {type(e).__name__}: {str(e)[:100]}")
  return _logged(row, t0)


def run(a) -> dict:
  t0 = time.time()
  budget = lambda: time.time() - t0 > a.budget_s
  device = jax.devices()[0]
  peak = mfu.device_peak([device])
  # Compiling dominates: every part compiles at once (XLA releases the GIL), then each is timed
  # alone, one after another.
  with concurrent.futures.ThreadPoolExecutor(len(a.widths) + 2) as pool:
    built = {width: pool.submit(compile_width, a, width) for width in a.widths}
    sampler = pool.submit(prepare_sampler, a)
    cascade = pool.submit(prepare_cascade, a)
  compile_s = time.time() - t0
  print(f"[device_suite] compiled in {compile_s:.0f} s", file=sys.stderr, flush=True)
  middle = lambda: built[a.widths[1]].result()  # .result() raises what compiling raised, in the row
  parts = [("train", lambda w=w: train_row(a, peak, w, built[w].result())) for w in a.widths]
  parts += [("attention", lambda: attention_row(a, peak, middle())),
            ("sampler", lambda: sampler_row(a, sampler.result())),
            ("cascade", lambda: cascade_row(a, peak, cascade.result()))]
  rows = [_skipped(part) if budget() else _guarded(part, fn) for part, fn in parts]
  return {"device": device.device_kind, "platform": device.platform, "devices": jax.device_count(),
          "jax": jax.__version__, "peak": peak.label if peak else "unknown (TFLOP/s only)",
          "seconds": time.time() - t0, "compile_seconds": compile_s, "rows": rows}


def table(result: dict) -> str:
  fmt = lambda v, f: "-" if v is None else f.format(v)
  lines = [(r["part"], r["model"], r["batch"] or "-", r["dtype"] or "-", r["attention"] or "-",
            fmt(r["ms"], "{:.4g} ms/" + r["per"]),
            fmt(r["tflops_per_device"], "{:.3g}"), fmt(r["mfu"], "{:.1%}"), r["note"])
           for r in result["rows"]]
  return (f"{result['device']} ({result['platform']}, {result['devices']} device(s)), jax {result['jax']}; "
          f"MFU against {result['peak']}; {result['seconds']:.0f} s\n\n" + markdown_table(COLUMNS, lines))


def main(argv=None) -> dict:
  a = parse_args(argv)
  if a.cpu and jax.config.jax_platforms != "cpu":  # before any backend starts
    jax.config.update("jax_platforms", "cpu")
  result = run(a)
  print(table(result))
  with open(a.json, "w") as f:
    json.dump(result, f, indent=1)
  print(f"\nwrote {a.json}")
  return result


if __name__ == "__main__":
  main()
