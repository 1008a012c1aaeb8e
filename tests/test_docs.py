"""The docs and the public surface stay honest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import semsearch
from semsearch.cli import app
from tests.conftest import REPO


def command_names() -> list[str]:
    return [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]


def test_every_command_has_help_and_is_in_the_readme() -> None:
    from typer.testing import CliRunner

    readme = (REPO / "README.md").read_text()
    for name in command_names():
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage" in result.stdout
        assert f"semsearch {name}" in readme, f"README does not mention 'semsearch {name}'"


def test_exports_match_all() -> None:
    public = {n for n in dir(semsearch) if not n.startswith("_") and n[0].isupper() or n == "load_settings"}
    assert public <= set(semsearch.__all__)
    for name in semsearch.__all__:
        assert hasattr(semsearch, name)


def test_cli_import_stays_light() -> None:
    code = "import sys, semsearch.cli; heavy = [m for m in ('torch', 'sentence_transformers', 'matplotlib', 'faiss') if m in sys.modules]; print(heavy)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    test_line = next(line for line in ci.splitlines() if line.startswith("bash scripts/"))
    assert test_line in readme


def test_config_yaml_lists_every_setting_with_its_default() -> None:
    import dataclasses

    import yaml

    from semsearch.config import Settings

    listed = yaml.safe_load((REPO / "config.yaml").read_text())
    defaults = {f.name: getattr(Settings(), f.name) for f in dataclasses.fields(Settings)}
    assert set(listed) == set(defaults)
    for name, value in defaults.items():
        assert listed[name] == value or (value == "" and listed[name] in ("", None)), name


def test_the_readme_python_example_runs(tmp_path: Path, fake_encoder: object, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "notes.jsonl").write_text(
        '{"id": "n1", "text": "A vaccine teaches the body to recognise a virus.", "topic": "health"}\n'
        '{"id": "n2", "text": "Rainfall was heavy in the north.", "topic": "weather"}\n'
    )
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    first = printed.splitlines()[0]
    assert "'documents': 3" in printed and (" x1 " in first or " n1 " in first)
