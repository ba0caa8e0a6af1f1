"""Benchmarks (figures, never pass/fail). Run as modules from the repo root, e.g.

    python -m bench.bench_unet --quick
    python -m bench.device_suite            # on a GPU/TPU machine; --cpu: tiny, on CPU
    python -m bench.bench_vs_imagen_pytorch
    python -m bench.bench_xla_cpu_options    # the CLI's XLA CPU options vs XLA's defaults

Measured tables live in `bench/RESULTS.md`.
"""
from imagen_video.utils import xla_cpu

# Before any benchmark imports JAX: measure what the CLI runs (its XLA CPU options).
xla_cpu.set_cpu_options()
