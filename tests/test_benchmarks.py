"""The benchmark scripts still run (on a tiny catalog; nothing here is timed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_run_all_writes_every_section(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # an embedded Redis in tmp_path
    out = tmp_path / "BENCHMARKS.md"
    done = subprocess.run([sys.executable, "benchmarks/run_all.py", "--smoke", "--dir", str(tmp_path / "bench"),
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    for heading in ("## Targets", "## Catalog", "## Where /recommend spends its time", "## Over HTTP",
                    "## Feedback", "## Retrieval"):
        assert heading in text
    for row in ("| vw_score |", "| replicas |", "| **total** |", "| epsilon_greedy |", "| thompson |",
                "| 20 |", "recall@1000", "| 3000 |"):
        assert row in text, row
    assert "| errors |" in text and "Soak: 200 mixed requests" in text
    assert not list((tmp_path / "bench").rglob("*.settings")), "embedded Redis left running"
