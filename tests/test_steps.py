"""scripts/steps.sh, the visible steps of the set-up, main and test jobs: a title, the time, the full output in
build/logs/<name>.log, and on failure the tail of that log and the job stopped."""

import subprocess
from pathlib import Path

STEPS = Path(__file__).resolve().parents[1] / "scripts" / "steps.sh"


def _run(script: str, logs: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {STEPS}; {script}"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CYCLEISP_FAST_LOGS": str(logs)},
        timeout=60,
    )


def test_a_step_prints_its_title_and_time_and_logs_its_output(tmp_path):
    result = _run('step hello "Say hello" bash -c "echo hidden line"; step_summary', tmp_path)
    assert result.returncode == 0, result.stderr
    assert "==> Say hello" in result.stdout and "done in 0m0" in result.stdout
    assert "hidden line" not in result.stdout
    assert (tmp_path / "hello.log").read_text() == "hidden line\n"
    assert "Steps:" in result.stdout and "Say hello" in result.stdout.split("Steps:")[1]


def test_a_live_step_shows_its_output_too(tmp_path):
    result = _run('live_step table "Print a table" bash -c "echo \\| a \\|"', tmp_path)
    assert result.returncode == 0 and "| a |" in result.stdout
    assert (tmp_path / "table.log").read_text() == "| a |\n"


def test_a_failing_step_shows_the_tail_of_its_log_and_stops_the_job(tmp_path):
    script = 'step broken "Break" bash -c "seq 1 100; echo the real error >&2; exit 3"; echo never reached'
    result = _run(script, tmp_path)
    assert result.returncode == 3
    assert "never reached" not in result.stdout
    assert "!! Break failed after" in result.stderr and "exit status 3" in result.stderr
    assert "the real error" in result.stderr and "\n62\n" in result.stderr and "\n61\n" not in result.stderr  # 40 lines


def test_progress_names_the_compile_count_and_file(tmp_path):
    log = tmp_path / "build.log"
    lines = [
        "  [1/3] c++ -MMD -c -c /repo/csrc/a.cpp -o a.o",
        "  [2/3] /usr/local/cuda/bin/nvcc -c /repo/csrc/ops/b.cu -o b",
    ]
    log.write_text("\n".join(lines) + "\n")
    result = _run(f"_step_progress {log}", tmp_path)
    assert result.stdout.strip() == "[2/3] compiling /repo/csrc/ops/b.cu"
