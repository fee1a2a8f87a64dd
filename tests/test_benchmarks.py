"""The benchmark scripts still run (on a tiny catalog; nothing here is timed)."""

from __future__ import annotations

import json
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


@pytest.mark.slow
def test_soak_and_snapshot_stall_scripts_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    soak = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--items", "2000", "--users", "200",
                           "--requests", "300", "--rate", "60", "--chunks", "2", "--dir", str(tmp_path / "bench")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert soak.returncode == 0, soak.stderr[-4000:]
    assert "| 300 |" in soak.stdout and "Growth after warm-up: RSS" in soak.stdout
    stall = subprocess.run([sys.executable, "-m", "benchmarks.snapshot_stall", "--rewards", "2000"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=300)
    assert stall.returncode == 0, stall.stderr[-4000:]
    assert "| staged parts, compressed (now) | write |" in stall.stdout


@pytest.mark.slow
def test_worker_memory_script_reads_every_worker_at_every_stage(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.worker_memory", "--items", "2000", "--users", "200",
                           "--warmup-s", "2", "--step-s", "3", "--candidates", "100", "--dir", str(tmp_path / "bench")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.splitlines()[0])
    stages = ("after start", "after warm-up", "after the step")
    assert all(len(result[s]) == 2 for s in stages)  # both workers, each read at each stage
    assert all(0 < m["private"] <= m["rss"] for s in stages for m in result[s].values())
    assert not result["step"]["errors"] and result["learner"]["rss"] > 0
    assert "| worker |" in done.stdout


@pytest.mark.slow
def test_rebuild_memory_script_reads_both_workers_after_a_rebuild_they_both_serve(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.rebuild_memory", "--items", "2000", "--users", "200",
                           "--rebuilds", "1", "--warmup-s", "2", "--after-s", "2", "--candidates", "100",
                           "--dir", str(tmp_path / "bench")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.splitlines()[0])
    [rebuild] = result["rebuilds"]
    assert rebuild["version"] == "v000002" and rebuild["errors"] == 0 and rebuild["worst_step_p99"] > 0
    assert len(result["after warm-up"]) == 2 and set(rebuild["memory"]) == set(result["after warm-up"])
    assert all(0 < m["own"] <= m["rss"] for m in rebuild["memory"].values())
    assert "| worker | after warm-up | after rebuild 1 |" in done.stdout
