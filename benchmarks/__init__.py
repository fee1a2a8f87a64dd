"""Benchmarks: a script per question; `python -m benchmarks.run_all` writes BENCHMARKS.md."""

import os

# As `banditrec serve` runs its workers: one BLAS thread per process (see banditrec/cli.py).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
