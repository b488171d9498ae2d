"""The project's own contracts: README commands and CI stay in sync."""

from __future__ import annotations

import re

from tests.helpers import ROOT


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b and "venv" in b)
    assert test_cmd.strip() in ci
    assert "exit 5" in ci or '-eq 5' in ci
    assert "dataset-fashion-mnist" in ci


def test_readme_main_job_runs_an_embedded_dataset():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    main = blocks[0]
    assert "pip install -e ." in main and "python -m suite run dcgan_digits" in main
