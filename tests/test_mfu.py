"""FLOPs from XLA's cost analysis against counts by hand (one device, 8 devices, loops), the
chip table, and TFLOP/s and MFU in the training progress line."""
import importlib.util
import io
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from imagen_video.train import progress
from imagen_video.utils import chips, mfu

B, H, W, CIN, COUT, KS, D = 16, 12, 12, 8, 16, 3, 64
OH, OW = H - KS + 1, W - KS + 1          # VALID conv: every tap is real (XLA skips padding taps)
CONV = 2 * B * OH * OW * COUT * KS * KS * CIN
DENSE = 2 * B * (OH * OW * COUT) * D


def _loss(params, x, target):
  k, w = params
  h = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = h.reshape(x.shape[0], -1) @ w
  return jnp.sum(y * target)


def _step(params, x, target):
  loss, grads = jax.value_and_grad(_loss)(params, x, target)
  return loss, grads


def _args():
  r = np.random.default_rng(0)
  params = (jnp.asarray(r.normal(size=(KS, KS, CIN, COUT)), jnp.float32),
            jnp.asarray(r.normal(size=(OH * OW * COUT, D)), jnp.float32))
  return params, jnp.asarray(r.normal(size=(B, H, W, CIN)), jnp.float32), jnp.ones((B, D), jnp.float32)


def _by_hand() -> float:
  # forward conv + dense; backward: the dense's weight and input grads, the conv's filter grad
  # (the input needs no grad)
  return 2 * CONV + 3 * DENSE


def test_cost_analysis_flops_of_a_conv_dense_train_step_match_a_count_by_hand():
  flops = mfu.compiled_flops(jax.jit(_step).lower(*_args()).compile())
  assert flops == pytest.approx(_by_hand(), rel=0.02)


def test_a_batch_sharded_compile_reports_one_devices_share():
  devices = jax.devices()
  assert len(devices) == 8, "conftest sets 8 fake CPU devices"
  mesh = jax.sharding.Mesh(np.asarray(devices), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
  rep, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("d"))
  sharded = jax.jit(_step, in_shardings=((rep, rep), rows, rows), out_shardings=(rep, (rep, rep)))
  one = mfu.compiled_flops(jax.jit(_step).lower(*_args()).compile())
  eight = mfu.compiled_flops(sharded.lower(*_args()).compile())
  # the gradient all-reduce adds a few additions per parameter to each device's share
  assert eight == pytest.approx(one / 8, rel=0.05)


def _accumulated(params, x, target):
  """The gradient over 4 micro-batches, as train_step's accumulation loop computes it."""
  def body(acc, i):
    mb = jax.lax.dynamic_slice_in_dim(x, i * (B // 4), B // 4)
    tb = jax.lax.dynamic_slice_in_dim(target, i * (B // 4), B // 4)
    return jax.tree.map(jnp.add, acc, jax.grad(_loss)(params, mb, tb)), None
  return jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), jnp.arange(4))[0]


def test_step_flops_counts_a_loop_per_trip():
  compiled = jax.jit(_accumulated).lower(*_args()).compile()
  # the loss value is not needed here: no forward dense
  assert mfu.step_flops(compiled, loop_trips=4) == pytest.approx(2 * CONV + 2 * DENSE, rel=0.03)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed")
def test_step_flops_counts_a_loop_per_trip_when_compiled_for_tpu():
  """AOT from this host (train/aot.py): the same accumulation loop compiled for a TPU device
  reads the same FLOPs once the TPU compiler's own loop counting is probed."""
  from imagen_video.train import aot
  device = aot.topology_devices(aot.parse_slice("v5p-8"))[0]
  params, x, target = _args()
  on_tpu = jax.sharding.SingleDeviceSharding(device)
  args = [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=on_tpu) for a in jax.tree.leaves((params, x, target))]
  tree = jax.tree.structure(params)
  looped = jax.jit(lambda *a: _accumulated(jax.tree.unflatten(tree, a[:-2]), *a[-2:])).lower(*args).compile()
  # the same gradient in one pass, compiled by the same (TPU) compiler: the independent count
  whole = jax.jit(lambda *a: jax.grad(_loss)(jax.tree.unflatten(tree, a[:-2]), *a[-2:])).lower(*args).compile()
  # libtpu 0.0.42 counts the loop's body once, and one trip (a quarter batch) 9% above a quarter
  # of the whole (its small-batch tiling): without the probe this would read 3.6x low.
  assert mfu.step_flops(looped, loop_trips=4, device=device) == pytest.approx(mfu.compiled_flops(whole), rel=0.15)


class _Fake:
  def __init__(self, cost):
    self.cost = cost

  def cost_analysis(self):
    if isinstance(self.cost, Exception):
      raise self.cost
    return self.cost


def test_compiled_flops_reads_a_dict_a_list_of_dicts_or_nothing():
  assert mfu.compiled_flops(_Fake({"flops": 5.0, "bytes accessed": 9.0})) == 5.0
  assert mfu.compiled_flops(_Fake([{"flops": 7.0}])) == 7.0  # older JAX
  for missing in (None, [], {}, {"flops": -1.0}, NotImplementedError("no cost analysis")):
    assert mfu.compiled_flops(_Fake(missing)) is None


@pytest.mark.parametrize("kind,family", [
    ("TPU v4", "v4"), ("TPU v5 lite", "v5e"), ("TPU v5e", "v5e"), ("TPU v5", "v5p"),
    ("TPU v5p", "v5p"), ("TPU v6 lite", "v6e"), ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H200", "h200"), ("NVIDIA GH200 480GB", "h200"),
    ("NVIDIA A100-SXM4-40GB", "a100"), ("NVIDIA A100 80GB PCIe", "a100"),
    ("TPU v50", None), ("cpu", None), ("AMD Instinct MI300X", None), ("NVIDIA L4", None)])
def test_the_chip_table_names_device_kinds(kind, family):
  chip = chips.for_kind(kind)
  assert (chip.family if chip else None) == family


def test_peaks_per_device_kind_and_the_aot_slices_share_the_table():
  from imagen_video.train import aot
  assert chips.for_kind("TPU v5 lite").peak_flops == 197e12
  assert chips.for_kind("NVIDIA H100 80GB HBM3").peak_flops == 989e12
  assert aot.parse_slice("v5p-8").chip is chips.for_kind("TPU v5")


class _Device:
  platform, device_kind = "gpu", "Some Future GPU"


def test_an_unknown_accelerator_has_no_peak_and_the_cpu_peak_is_measured():
  assert mfu.device_peak([_Device()]) is None
  peak = mfu.device_peak(jax.devices()[:1])
  assert peak.flops > 1e8 and peak.label.startswith("measured CPU fp32 matmul peak")


def _line(flops, peak, tmp_path=None):
  out = io.StringIO()
  prog = progress.Progress(10, 0, 4, None if tmp_path is None else str(tmp_path), stream=out,
                           flops_per_step=flops, peak=peak)
  scalars = prog.update(1, {"loss": 1.0})
  prog.close()
  return out.getvalue(), scalars


def test_the_progress_line_shows_tflops_per_device_and_mfu(tmp_path):
  line, scalars = _line(3e9, mfu.Peak(2e12, "test peak"), tmp_path)
  rate = float(re.search(r"\| ([0-9.]+) steps/s", line).group(1))
  tflops = float(re.search(r"([0-9.e+-]+) TFLOP/s/device", line).group(1))
  share = float(re.search(r"MFU ([0-9.]+)%", line).group(1)) / 100
  assert tflops == pytest.approx(3e9 * scalars["steps_per_sec"] / 1e12, rel=1e-2)
  assert tflops == pytest.approx(3e9 * rate / 1e12, rel=0.05)  # the rate is shown to 2 decimals
  assert share == pytest.approx(scalars["mfu"], abs=1e-3)
  assert scalars["mfu"] == pytest.approx(scalars["tflops_per_device"] * 1e12 / 2e12)
  logged = json.loads((tmp_path / "metrics_train.jsonl").read_text().splitlines()[0])
  assert logged["mfu"] == pytest.approx(scalars["mfu"])
  assert logged["tflops_per_device"] == pytest.approx(scalars["tflops_per_device"])


def test_without_a_peak_only_tflops_and_without_flops_neither():
  line, scalars = _line(3e9, None)
  assert "TFLOP/s/device" in line and "MFU" not in line and "mfu" not in scalars
  line, scalars = _line(None, mfu.Peak(2e12, "test peak"))
  assert "TFLOP/s" not in line and "MFU" not in line and "tflops_per_device" not in scalars
