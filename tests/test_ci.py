""".ci/run: valid bash, the README's exact install and test commands, and a duration for every phase."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"


def _readme_block(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_ci_is_valid_bash_and_runs_the_readme_commands_as_written():
    subprocess.run(["bash", "-n", str(CI)], check=True)
    lines = CI.read_text().splitlines()
    for heading in ("Install", "Test"):
        for command in _readme_block(heading):
            assert command in lines, f"README's {heading} command {command!r} is not a line of .ci/run"
    for phase in ("venv", "install", '"default tests"', '"slow tests"'):
        assert f"begin {phase}" in lines


def test_every_phase_prints_its_duration_and_a_failing_one_its_status():
    script = ". .ci/phases.sh\nbegin one\nbegin two\nend_phase\nbegin three\nexit 3\n"
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    out = done.stdout.splitlines()
    assert re.fullmatch(r"phase one: \d+ s", out[1]) and re.fullmatch(r"phase two: \d+ s", out[3]), out
    assert re.fullmatch(r"phase three: \d+ s \(failed, exit status 3\)", out[5]), out
    assert re.fullmatch(r"ci: \d+ s in all, exit status 3", out[6]), out
