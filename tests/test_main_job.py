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


def test_every_step_runs_once_basin_beside_interpret_and_the_page_last(tmp_path):
    code, lines = run_job(tmp_path)
    assert code == 0
    starts = [line.split()[1] for line in lines if line.startswith("start")]
    assert starts[-1] == "blog"
    analyses = [s for s in starts if s.startswith(("graphpath.", "blog"))]
    assert analyses[0] == "graphpath.train" and analyses[-1] == "blog"
    assert sorted(analyses[1:-1]) == ["graphpath.basin", "graphpath.interpret", "graphpath.llc"]
    assert starts.index("graphpath.interpret") < starts.index("graphpath.llc")
    # basin runs beside interpret: interpret starts before basin ends; the page waits for basin
    assert next(i for i, line in enumerate(lines) if line.startswith("start graphpath.interpret")) \
        < lines.index("end graphpath.basin")
    assert lines.index("end graphpath.basin") < next(i for i, line in enumerate(lines) if line.startswith("start blog"))
    assert any("--seeds 0,1,2,3,4" in line for line in lines if line.startswith("start graphpath.train"))


def test_a_failing_step_stops_the_job_with_its_status_and_stops_basin(tmp_path):
    code, lines = run_job(tmp_path, FAIL="graphpath.interpret", BASIN_SECONDS="5")
    assert code == 3
    assert "fail graphpath.interpret" in lines
    assert "end graphpath.basin" not in lines  # killed, not left running
    assert not any(line.startswith("start blog") for line in lines)


def test_a_failing_basin_stops_the_job_before_the_page(tmp_path):
    code, lines = run_job(tmp_path, FAIL="graphpath.basin")
    assert code == 3
    assert "end graphpath.llc" in lines and not any(line.startswith("start blog") for line in lines)
