"""CLI wiring (CliRunner), the error contract of main(), and the real console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import ofactl
import ofactl.checkpoint
from ofactl.checkpoint import save_model
from ofactl.cli import ModelOption, PeriodOption, QuietOption, app, main
from ofactl.model import OFAStudent, StudentConfig
from ofactl.period import FramePeriod
from ofactl.workspace import MODEL_ENV_VAR, WORKSPACE_FILE

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    monkeypatch.delenv("OFACTL_DEBUG", raising=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = OFAStudent(StudentConfig.preset("tiny"))
    return save_model(tmp_path_factory.mktemp("models") / "tiny", model)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run main() like the console script does; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


# ----------------------------------------------------------------------------- wiring


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"ofactl {ofactl.__version__}"


def test_help_lists_info_as_a_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.stdout
    bare = runner.invoke(app, [])
    assert "Usage" in bare.output and "info" in bare.output


def test_info_json(model_dir: Path) -> None:
    result = runner.invoke(app, ["info", str(model_dir), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["model_dir"] == str(model_dir)
    assert info["config"]["embed_dim"] == 64
    assert info["parameters"]["total"] == sum(info["parameters"]["by_component"].values()) > 0
    assert info["training"]["status"] == "untrained (random init)"
    assert info["calibration"]["calibrated"] is False
    assert info["environment"]["torch_version"] == str(torch.__version__)


def test_info_tables(model_dir: Path) -> None:
    result = runner.invoke(app, ["info", "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    for expected in (str(model_dir), "CNN feature extractor", "alpha module", "prediction heads", "total", "untrained (random init)", "not calibrated: run `ofactl calibrate DATA`", "embed_dim"):
        assert expected in result.stdout, expected


def test_info_uses_env_then_workspace(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["info", "--json"], env={MODEL_ENV_VAR: str(model_dir)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_dir"] == str(model_dir)
    (tmp_path / WORKSPACE_FILE).write_text(f'model = "{model_dir}"\n')
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_dir"] == str(model_dir)


def test_shared_options_are_reusable() -> None:
    demo = typer.Typer()

    @demo.callback()
    def _root() -> None:
        """Demo."""

    @demo.command()
    def show(model: ModelOption = None, period: PeriodOption = None, quiet: QuietOption = False) -> None:
        typer.echo(f"{model} {period!r} {quiet}")

    result = runner.invoke(demo, ["show", "-m", "exp/a", "--period", "0.09s", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"exp/a {FramePeriod(90.0)!r} True"
    result = runner.invoke(demo, ["show", "--period", "90"])
    assert result.exit_code == 2
    assert "did you mean '90ms'" in " ".join(result.output.replace("│", " ").split())


# ----------------------------------------------------------------------------- main(): the error contract


def test_no_model_is_one_error_line_and_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for parent in [tmp_path, *tmp_path.parents]:
        if (parent / WORKSPACE_FILE).exists():
            pytest.skip("a workspace above the test directory")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["info"], capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: no model given")
    assert lines[1].startswith("hint: ") and "--model" in lines[1] and MODEL_ENV_VAR in lines[1]


def test_long_messages_are_not_wrapped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / ("a_very_long_directory_name_" * 8) / "model"
    code, _, err = run_main(["info", str(missing)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 2 and str(missing) in err.splitlines()[0]


def test_conflicting_model_arguments(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["info", str(model_dir), "--model", "/elsewhere"], capsys)
    assert code == 2 and err.startswith("error: two models given")


def test_unexpected_exception_is_one_internal_error_line(model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(path: object) -> dict:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(ofactl.checkpoint, "describe_model", boom)
    code, _, err = run_main(["info", str(model_dir)], capsys)
    assert code == 1
    assert err.splitlines() == ["internal error: RuntimeError: boom second line (set OFACTL_DEBUG=1 for the traceback)"]
    monkeypatch.setenv("OFACTL_DEBUG", "1")
    code, _, err = run_main(["info", str(model_dir)], capsys)
    assert code == 1 and "Traceback" in err and "boom" in err


def test_debug_shows_the_traceback_of_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OFACTL_DEBUG", "1")
    code, _, err = run_main(["info", str(tmp_path / "missing")], capsys)
    assert code == 2
    assert "Traceback" in err and err.rstrip().splitlines()[-2].startswith("error: ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_main(["info", "--no-such-option"], capsys)
    assert code == 2


# ----------------------------------------------------------------------------- the real entry points


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    env.pop("OFACTL_DEBUG", None)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)


def test_console_script_help_and_version() -> None:
    script = Path(sys.executable).with_name("ofactl")
    found = str(script) if script.exists() else shutil.which("ofactl")
    if found is None:
        pytest.skip("the ofactl console script is not installed (pip install -e .)")
    command = [found]
    result = _run([*command, "--help"])
    assert result.returncode == 0, result.stderr
    assert "info" in result.stdout
    result = _run([*command, "--version"])
    assert result.returncode == 0 and result.stdout.strip() == f"ofactl {ofactl.__version__}"


def test_python_m_ofactl_reports_errors_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_text("not a checkpoint")
    result = _run([sys.executable, "-m", "ofactl", "info", str(tmp_path)])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 2


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import ofactl.cli\n"
        "assert 'torch' not in sys.modules, 'importing ofactl.cli imported torch'\n"
        "try:\n"
        "    ofactl.cli.main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'ofactl --help imported torch'\n"
    )
    result = _run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert "info" in result.stdout


def test_info_wraps_long_values_instead_of_cutting_them(tmp_path: Path) -> None:
    """In a log or pipe (80 columns here), a long value (a path, a hash) wraps; it was cut to '…'."""
    from ofactl.checkpoint import save_model
    from ofactl.model import OFAStudent, StudentConfig

    long_path = "/data/" + "/".join(f"folder{i:02d}" for i in range(14)) + "/distilhubert.ckpt"
    save_model(tmp_path / "m", OFAStudent(StudentConfig.preset("tiny")), training={"imported_from": long_path})
    result = runner.invoke(app, ["info", "--model", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert "folder13/distilhubert.ckpt" in "".join(line.strip() for line in result.stdout.splitlines())
