"""`bench/device_suite.py --cpu`: every row of the one table measured (or saying why not), its
TFLOP/s and MFU consistent with its FLOPs, time and the peak; the JSON is the table's."""
import json
import pathlib
import sys

import pytest

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # `bench/` is a top-level folder, not part of the installed package
  sys.path.insert(0, ROOT)

from bench import device_suite
from imagen_video.utils import mfu


def test_cpu_mode_measures_every_row_and_writes_the_table_as_json(tmp_path, capsys):
  out = tmp_path / "suite.json"
  result = device_suite.main(["--cpu", "--json", str(out)])
  assert json.loads(out.read_text()) == json.loads(json.dumps(result))
  rows = result["rows"]
  assert [r["part"] for r in rows] == ["train"] * 3 + ["attention", "sampler", "cascade"]
  assert rows[3]["ms"] is None and "no attention kernel to compare on cpu" in rows[3]["note"]
  peak = mfu.measured_cpu_peak(1)
  assert result["peak"].startswith("measured CPU fp32 matmul peak")
  measured = [r for r in rows if r["part"] != "attention"]
  for r in measured:
    assert r["ms"] > 0 and r["flops_per_device"] > 0, r
    assert r["tflops_per_device"] == pytest.approx(r["flops_per_device"] / (r["ms"] / 1e3) / 1e12)
    assert r["mfu"] == pytest.approx(r["tflops_per_device"] * 1e12 / peak.flops)
  widths = [int(r["model"].split()[1].rstrip(",")) for r in rows[:3]]
  assert widths == [8, 16, 24]
  # wider nets do more work per step
  assert rows[0]["flops_per_device"] < rows[1]["flops_per_device"] < rows[2]["flops_per_device"]
  assert rows[5]["note"].count("ms/step") == 4  # the cascade's four stages
  table = capsys.readouterr().out
  assert "| part | model | batch | dtype | attention | time | TFLOP/s/device | MFU | note |" in table
  assert table.count("| train |") == 3 and "ms/sampler step" in table and "ms/sample |" in table


def test_the_batch_fills_the_budget_with_a_power_of_two():
  assert device_suite.largest_batch(10.0, 3.0, 10.0 + 3.0 * 37, 256) == 32
  assert device_suite.largest_batch(10.0, 3.0, 10.0 + 3.0 * 37, 16) == 16
  assert device_suite.largest_batch(10.0, 3.0, 5.0, 256) == 1  # nothing fits: the smallest
