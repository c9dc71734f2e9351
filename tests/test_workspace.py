"""ofactl.toml: discovery, schema errors, model resolution order, and atomic updates."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ofactl.errors import OfactlError
from ofactl.workspace import (
    MODEL_ENV_VAR,
    WORKSPACE_FILE,
    find_workspace,
    load_workspace,
    resolve_model,
    set_default_model,
)


def make_model_dir(path: Path) -> Path:
    """A directory that passes the model-directory check (contents are not read here)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.pt").write_bytes(b"not read by resolve_model")
    return path


@pytest.fixture()
def isolated(tmp_path: Path) -> Path:
    """tmp_path, after checking that no ofactl.toml above it could leak into the tests."""
    for parent in tmp_path.parents:
        if (parent / WORKSPACE_FILE).exists():
            pytest.skip(f"{parent / WORKSPACE_FILE} exists above the test directory")
    return tmp_path


# ----------------------------------------------------------------------------- discovery and schema


def test_no_workspace(isolated: Path) -> None:
    assert find_workspace(isolated) is None


def test_found_from_a_subdirectory_with_paths_resolved_against_the_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(isolated / "home"))
    (isolated / WORKSPACE_FILE).write_text(
        '# comment\nmodel = "exp/ofa"\nresults = "out/r.csv"\n\n[data]\nsid = "/data/VoxCeleb1"\nks = "rel/ks"\nic = "~/fluent"\n'
    )
    sub = isolated / "a" / "b"
    sub.mkdir(parents=True)
    ws = find_workspace(sub)
    assert ws is not None
    assert ws.root == isolated
    assert ws.path == isolated / WORKSPACE_FILE
    assert ws.model == isolated / "exp" / "ofa"
    assert ws.results == isolated / "out" / "r.csv"
    assert ws.data == {"sid": Path("/data/VoxCeleb1"), "ks": isolated / "rel" / "ks", "ic": isolated / "home" / "fluent"}
    assert ws.dataset("sid") == Path("/data/VoxCeleb1")
    with pytest.raises(OfactlError, match="no dataset for task 'er'"):
        ws.dataset("er")


def test_nearest_workspace_wins_and_defaults_apply(isolated: Path) -> None:
    (isolated / WORKSPACE_FILE).write_text('model = "outer"\n')
    inner = isolated / "inner"
    inner.mkdir()
    (inner / WORKSPACE_FILE).write_text("")
    ws = find_workspace(inner)
    assert ws is not None and ws.root == inner
    assert ws.model is None
    assert ws.results == inner / "results.csv"
    assert ws.data == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('model = "a"\nresults = \n', ":2: invalid TOML: Invalid value (column 11)"),
        ('model = "a"\n[data\n', ":2: invalid TOML"),
        ('model = "a"\nmodle = "b"\n', ":2: unknown key 'modle'"),
        ('results = 3\n', ":1: `results` must be a non-empty path string"),
        ('[data]\nsid = "/x"\nks = 5\n', ":3: [data] ks must be a non-empty path string"),
        ('data = "/x"\n', ":1: `data` must be a table"),
    ],
)
def test_malformed_file_is_one_line_naming_file_and_line(isolated: Path, text: str, expected: str) -> None:
    path = isolated / WORKSPACE_FILE
    path.write_text(text)
    with pytest.raises(OfactlError) as info:
        load_workspace(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


# ----------------------------------------------------------------------------- resolution order


@pytest.fixture()
def three_models(isolated: Path) -> dict[str, Path]:
    """Models for each source plus a workspace naming one of them."""
    models = {name: make_model_dir(isolated / name) for name in ("flag", "env", "ws")}
    (isolated / WORKSPACE_FILE).write_text('model = "ws"\n')
    return models


def test_resolution_order(three_models: dict[str, Path], isolated: Path) -> None:
    env = {MODEL_ENV_VAR: str(three_models["env"])}
    assert resolve_model(str(three_models["flag"]), env=env, cwd=isolated) == three_models["flag"]
    assert resolve_model(None, env=env, cwd=isolated) == three_models["env"]
    assert resolve_model(None, env={}, cwd=isolated) == three_models["ws"]
    assert resolve_model(None, env={MODEL_ENV_VAR: ""}, cwd=isolated) == three_models["ws"]  # empty = unset


def test_resolution_reads_os_environ_by_default(three_models: dict[str, Path], isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_ENV_VAR, str(three_models["env"]))
    assert resolve_model(None, cwd=isolated) == three_models["env"]
    monkeypatch.delenv(MODEL_ENV_VAR)
    monkeypatch.chdir(isolated)
    assert resolve_model(None) == three_models["ws"]


def test_relative_values_and_model_pt_paths(three_models: dict[str, Path], isolated: Path) -> None:
    assert resolve_model("flag", env={}, cwd=isolated) == three_models["flag"]
    assert resolve_model("flag/model.pt", env={}, cwd=isolated) == three_models["flag"]
    assert resolve_model(None, env={MODEL_ENV_VAR: "env/model.pt"}, cwd=isolated) == three_models["env"]
    # A workspace value is relative to the workspace, not to the current directory.
    sub = isolated / "deep" / "er"
    sub.mkdir(parents=True)
    assert resolve_model(None, env={}, cwd=sub) == three_models["ws"]


def test_no_model_anywhere(isolated: Path) -> None:
    with pytest.raises(OfactlError) as info:
        resolve_model(None, env={}, cwd=isolated)
    hint = info.value.hint or ""
    assert "--model" in hint and MODEL_ENV_VAR in hint and "ofactl pretrain" in hint and WORKSPACE_FILE in hint


@pytest.mark.parametrize(
    ("source", "named"),
    [("flag", "--model"), ("env", MODEL_ENV_VAR), ("ws", WORKSPACE_FILE)],
)
def test_missing_model_names_path_and_source(isolated: Path, source: str, named: str) -> None:
    missing = isolated / "missing_model"
    (isolated / WORKSPACE_FILE).write_text('model = "missing_model"\n')
    cli = str(missing) if source == "flag" else None
    env = {MODEL_ENV_VAR: str(missing)} if source == "env" else {}
    with pytest.raises(OfactlError) as info:
        resolve_model(cli, env=env, cwd=isolated)
    assert str(missing) in info.value.message
    assert named in info.value.message
    assert "does not exist" in info.value.message


def test_directory_without_model_pt_and_other_files_are_refused(isolated: Path) -> None:
    (isolated / "empty").mkdir()
    with pytest.raises(OfactlError, match="no model.pt"):
        resolve_model("empty", env={}, cwd=isolated)
    (isolated / "hubert.pt").write_bytes(b"x")
    with pytest.raises(OfactlError, match="is a file, not a model directory") as info:
        resolve_model("hubert.pt", env={}, cwd=isolated)
    assert "--teacher" in (info.value.hint or "")


# ----------------------------------------------------------------------------- set_default_model


def test_set_default_model_creates_the_file(isolated: Path) -> None:
    model = make_model_dir(isolated / "exp" / "m")
    written = set_default_model(model, root=isolated)
    assert written == isolated / WORKSPACE_FILE
    assert 'model = "exp/m"' in written.read_text()  # recorded relative to the workspace
    assert resolve_model(None, env={}, cwd=isolated) == model


def test_set_default_model_keeps_comments_and_other_keys(isolated: Path) -> None:
    path = isolated / WORKSPACE_FILE
    original = '# my workspace\nresults = "r.csv"  # keep me\nmodel = "old"\n\n[data]\n# datasets\nsid = "/data/vox"\n'
    path.write_text(original)
    model = make_model_dir(isolated / "new")
    set_default_model(model / "model.pt", root=isolated)
    text = path.read_text()
    assert text == original.replace('model = "old"', 'model = "new"')
    assert tomllib.loads(text) == {"results": "r.csv", "model": "new", "data": {"sid": "/data/vox"}}


def test_set_default_model_inserts_before_tables(isolated: Path) -> None:
    path = isolated / WORKSPACE_FILE
    path.write_text('results = "r.csv"\n[data]\nsid = "/data/vox"\n')
    set_default_model(isolated / "m", root=isolated)
    assert tomllib.loads(path.read_text()) == {"results": "r.csv", "model": "m", "data": {"sid": "/data/vox"}}


def test_set_default_model_outside_root_is_absolute(isolated: Path) -> None:
    root = isolated / "ws"
    root.mkdir()
    model = make_model_dir(isolated / "elsewhere")
    set_default_model(model, root=root)
    assert load_workspace(root / WORKSPACE_FILE).model == model
    assert tomllib.loads((root / WORKSPACE_FILE).read_text())["model"] == str(model)


def test_set_default_model_uses_the_enclosing_workspace(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / WORKSPACE_FILE).write_text('results = "r.csv"\n')
    sub = isolated / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    written = set_default_model("exp/m")
    assert written == isolated / WORKSPACE_FILE
    assert not (sub / WORKSPACE_FILE).exists()
    assert tomllib.loads(written.read_text())["model"] == "sub/exp/m"


def test_set_default_model_refuses_a_broken_file_and_leaves_it(isolated: Path) -> None:
    path = isolated / WORKSPACE_FILE
    broken = 'results = "r.csv"\n[data\n'
    path.write_text(broken)
    with pytest.raises(OfactlError, match="invalid TOML"):
        set_default_model(isolated / "m", root=isolated)
    assert path.read_text() == broken
    assert sorted(os.listdir(isolated)) == [WORKSPACE_FILE]  # no temporary file left behind


def test_set_default_model_repairs_a_bad_model_entry(isolated: Path) -> None:
    path = isolated / WORKSPACE_FILE
    path.write_text('model = 3\nresults = "r.csv"\n')
    set_default_model(isolated / "m", root=isolated)
    assert tomllib.loads(path.read_text()) == {"model": "m", "results": "r.csv"}


_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=30
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_NAME)
def test_any_path_survives_the_toml_round_trip(isolated: Path, name: str) -> None:
    model = Path("/models") / name
    written = set_default_model(model, root=isolated)
    assert load_workspace(written).model == model


def test_pretrain_does_not_replace_a_default_the_user_set_and_use_sets_one(tmp_path, monkeypatch):
    """A finished pretrain records itself only where no existing model is the default; `ofactl use DIR` sets it."""
    from typer.testing import CliRunner

    from ofactl.checkpoint import save_model
    from ofactl.cli import app
    from ofactl.model import OFAStudent, StudentConfig
    from ofactl.train import _record_default
    from ofactl.workspace import load_workspace

    monkeypatch.chdir(tmp_path)
    mine = save_model(tmp_path / "mine", OFAStudent(StudentConfig.preset("tiny")))
    new = save_model(tmp_path / "new", OFAStudent(StudentConfig.preset("tiny")))
    assert _record_default(mine) == (True, None)  # no default yet: recorded
    assert _record_default(new) == (False, mine.absolute())  # the user's default stays
    assert load_workspace(tmp_path / "ofactl.toml").model == mine.absolute()
    out = CliRunner().invoke(app, ["use", str(new)])
    assert out.exit_code == 0 and "default model" in out.output
    assert load_workspace(tmp_path / "ofactl.toml").model == new.absolute()
    bad = CliRunner().invoke(app, ["use", str(tmp_path / "nothing")])
    assert bad.exit_code != 0 and "does not exist" in str(bad.exception)
    import shutil

    shutil.rmtree(new)  # a default that no longer exists is replaced
    assert _record_default(mine) == (True, None)
