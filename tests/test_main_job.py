"""scripts/main_job.sh, the README's main job, with a stand-in Python that records each step."""
from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE = textwrap.dedent("""\
    #!/usr/bin/env bash
    # records "start <module>" / "end <module>"; the basin step takes a while; FAIL=<module> exits 3
    module="$1 $2"
    [ "$1" = "-m" ] && module="$2"
    echo "start $module $*" >> "$LOG"
    [ "$module" = "graphpath.basin" ] && sleep "${BASIN_SECONDS:-1}"
    [ "$module" = "${FAIL:-none}" ] && { echo "fail $module" >> "$LOG"; exit 3; }
    echo "end $module" >> "$LOG"
    exit 0
    """)


def run_job(tmp_path: Path, **env) -> tuple[int, list[str]]:
    fake = tmp_path / "python3"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    log = tmp_path / "log"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "main_job.sh"), str(tmp_path / "out")],
                            env={**os.environ, "PYTHON": str(fake), "LOG": str(log), **env},
                            capture_output=True, text=True, timeout=60)
    return result.returncode, log.read_text().splitlines()


def test_every_step_runs_once_in_order_and_the_page_last(tmp_path):
    """The analyses run one after another: each holds the run directory while it writes
    (graphpath_common.locks), so two started together on it would refuse each other."""
    code, lines = run_job(tmp_path)
    assert code == 0
    starts = [line.split()[1] for line in lines if line.startswith("start")]
    analyses = [s for s in starts if s.startswith(("graphpath.", "blog"))]
    assert analyses == ["graphpath.train", "graphpath.basin", "graphpath.interpret", "graphpath.llc", "blog"]
    ends = [line.split()[1] for line in lines if line.startswith("end")]
    for name in analyses[:-1]:  # each ends before the next starts
        assert lines.index(f"end {name}") < next(i for i, line in enumerate(lines)
                                                 if line.startswith(f"start {analyses[analyses.index(name) + 1]} "))
    assert ends[-1] == "blog"
    assert any("--seeds 0,1,2,3,4" in line for line in lines if line.startswith("start graphpath.train"))
    assert any("--stage finetune" in line and "--workers 2" in line for line in lines if line.startswith("start graphpath.llc"))


def test_a_failing_step_stops_the_job_with_its_status(tmp_path):
    code, lines = run_job(tmp_path, FAIL="graphpath.interpret")
    assert code == 3
    assert "fail graphpath.interpret" in lines
    assert not any(line.startswith(("start graphpath.llc", "start blog")) for line in lines)


def test_a_failing_basin_stops_the_job_before_the_rest(tmp_path):
    code, lines = run_job(tmp_path, FAIL="graphpath.basin")
    assert code == 3
    assert not any(line.startswith(("start graphpath.interpret", "start blog")) for line in lines)
