"""The workspace file ``ofactl.toml`` and model resolution.

A workspace is a directory holding ``ofactl.toml``; commands run in it or in
any directory below it use its defaults::

    model = "exp/ofa_lmax2"          # default model directory
    results = "results.csv"          # the results table
    [data]                           # dataset root per task
    sid = "/data/VoxCeleb1"
    ks = "/data/speech_commands"

Relative paths (and ``~``) are resolved against the directory that holds the
file, so a workspace can be moved as a whole.

Every command that needs a model resolves it with :func:`resolve_model`:
``--model PATH``, else ``$OFACTL_MODEL``, else the workspace's ``model``, else
an error that says how to get one.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofactl.atomic import atomic_write_text as _atomic_write_text
from ofactl.errors import OfactlError

__all__ = [
    "WORKSPACE_FILE",
    "MODEL_ENV_VAR",
    "MODEL_FILE",
    "DEFAULT_RESULTS",
    "Workspace",
    "find_workspace",
    "load_workspace",
    "resolve_model",
    "model_directory",
    "set_default_model",
]

#: Name of the workspace file looked up in the current directory and its parents.
WORKSPACE_FILE = "ofactl.toml"
#: Environment variable naming the model when ``--model`` is not given.
MODEL_ENV_VAR = "OFACTL_MODEL"
#: The checkpoint file inside a model directory (see :mod:`ofactl.checkpoint`).
MODEL_FILE = "model.pt"
#: Results table used when the workspace does not name one.
DEFAULT_RESULTS = "results.csv"

_KNOWN_KEYS = ("model", "results", "data", "slurm")
#: keys of the ``[slurm]`` table (defaults of ``ofactl sweep --launcher slurm``) and their types
SLURM_KEYS = {"partition": str, "gpus": int, "time": (str, int), "mem": (str, int, float), "cpus": int}

_NO_MODEL_HINT = (
    f"pass --model DIR, set {MODEL_ENV_VAR}, or run `ofactl pretrain` which records the default in {WORKSPACE_FILE}"
)


@dataclass(frozen=True)
class Workspace:
    """The parsed ``ofactl.toml`` with every path resolved to an absolute path.

    Attributes:
        root: the directory holding ``ofactl.toml``.
        model: the default model directory, or None if the file names none.
        results: the results table (``root / "results.csv"`` unless set).
        data: dataset root per task name (``{"sid": Path("/data/VoxCeleb1")}``).
        slurm: the ``[slurm]`` table: defaults for ``sweep --launcher slurm`` (``partition``, ``gpus``,
            ``time``, ``mem``, ``cpus``).
    """

    root: Path
    model: Path | None = None
    results: Path = field(default=Path(DEFAULT_RESULTS))
    data: dict[str, Path] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The ``ofactl.toml`` file itself."""
        return self.root / WORKSPACE_FILE

    def dataset(self, task: str) -> Path:
        """The dataset root recorded for ``task`` under ``[data]``.

        Raises:
            OfactlError: if the workspace has no entry for ``task``.
        """
        if task not in self.data:
            known = ", ".join(sorted(self.data)) or "none"
            raise OfactlError(
                f"{self.path} has no dataset for task '{task}' (it has: {known})",
                hint=f'add `{task} = "/path/to/data"` under [data] in {self.path}, or pass the data path explicitly',
            )
        return self.data[task]


def find_workspace(start: str | os.PathLike[str] | None = None) -> Workspace | None:
    """Find and load ``ofactl.toml`` in ``start`` (default: cwd) or its nearest parent.

    Returns:
        The workspace, or None if no directory from ``start`` up to the
        filesystem root holds an ``ofactl.toml``.

    Raises:
        OfactlError: if the file found is malformed (names the file and line).
    """
    here = Path(start) if start is not None else Path.cwd()
    here = here.absolute()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / WORKSPACE_FILE
        if candidate.is_file():
            return load_workspace(candidate)
    return None


def load_workspace(path: str | os.PathLike[str]) -> Workspace:
    """Load one ``ofactl.toml`` file.

    Raises:
        OfactlError: if the file cannot be read, is not valid TOML, or does not
            follow the schema (one line naming the file and line).
    """
    path = Path(path).absolute()
    text = _read_text(path)
    doc = _parse(text, path)
    return _workspace_from_doc(doc, text, path)


def resolve_model(
    cli_value: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    *,
    flag: str = "--model",
) -> Path:
    """Find the model directory a command should use.

    Order: ``cli_value`` (the ``--model`` option), then ``$OFACTL_MODEL``,
    then the ``model`` recorded in the workspace's ``ofactl.toml``.  Relative
    option and environment values are taken relative to ``cwd``; the
    workspace's value relative to the workspace.

    Args:
        cli_value: the value given on the command line, or None.
        env: the environment to read ``OFACTL_MODEL`` from (default
            ``os.environ``); an empty value counts as unset.
        cwd: the directory to resolve relative paths and search the workspace
            from (default: the current directory).
        flag: how the command-line value is named in error messages.

    Returns:
        The absolute path of the model directory (a path to its ``model.pt``
        is mapped to the directory).

    Raises:
        OfactlError: if no source names a model, or the model named does not
            exist or is not a model directory (the message says which source
            the value came from).
    """
    env = os.environ if env is None else env
    base = Path(cwd).absolute() if cwd is not None else Path.cwd()
    if cli_value is not None and str(cli_value) != "":
        return model_directory(_under(base, cli_value), source=flag)
    env_value = env.get(MODEL_ENV_VAR, "")
    if env_value:
        return model_directory(_under(base, env_value), source=f"${MODEL_ENV_VAR}")
    workspace = find_workspace(base)
    if workspace is not None and workspace.model is not None:
        return model_directory(workspace.model, source=str(workspace.path))
    where = f"{workspace.path} names no model" if workspace is not None else f"no {WORKSPACE_FILE} in {base} or its parents"
    raise OfactlError(f"no model given ({flag} not set, ${MODEL_ENV_VAR} not set, {where})", hint=_NO_MODEL_HINT)


def model_directory(path: str | os.PathLike[str], source: str = "argument") -> Path:
    """Check that ``path`` is a model directory and return it (absolute).

    A model directory holds ``model.pt``; a path to that file is mapped to its
    directory.  ``source`` says where the value came from, for the message.

    Raises:
        OfactlError: if the path does not exist or is not a model directory.
    """
    path = Path(path).absolute()
    origin = f"(from {source})"
    fix = _fix_hint(source)
    if not path.exists():
        raise OfactlError(f"model directory {path} {origin} does not exist", hint=fix)
    if path.is_file():
        if path.name == MODEL_FILE:
            return path.parent
        teacher = "; a HuBERT / wav2vec2 checkpoint is a teacher: pass it to `ofactl pretrain --teacher`" if path.suffix in {".pt", ".pth", ".ckpt", ".bin"} else ""
        raise OfactlError(
            f"{path} {origin} is a file, not a model directory",
            hint=f"a model is a directory holding {MODEL_FILE}, written by `ofactl pretrain`{teacher}",
        )
    if not (path / MODEL_FILE).is_file():
        raise OfactlError(
            f"{path} {origin} is not an ofactl model directory: it has no {MODEL_FILE}",
            hint=f"a model directory is written by `ofactl pretrain`; {fix}",
        )
    return path


def set_default_model(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Record ``path`` as the workspace's default model in ``ofactl.toml``.

    Creates the file if needed, otherwise changes only the top-level ``model``
    line, so comments and other keys are kept.  The write is atomic (a
    temporary file in the same directory, fsync, ``os.replace``).  A model
    inside the workspace is recorded relative to it.

    Args:
        path: the model directory (or its ``model.pt``); relative to the
            current directory.
        root: the workspace directory; default: the enclosing workspace of the
            current directory if there is one, else the current directory.

    Returns:
        The path of the ``ofactl.toml`` written.

    Raises:
        OfactlError: if an existing ``ofactl.toml`` is malformed or the file
            cannot be written.
    """
    model_dir = Path(path).absolute()
    if model_dir.name == MODEL_FILE and model_dir.is_file():
        model_dir = model_dir.parent
    if root is None:
        found = find_workspace()
        root_dir = found.root if found is not None else Path.cwd()
    else:
        root_dir = Path(root).absolute()
    try:
        value = model_dir.relative_to(root_dir).as_posix()
    except ValueError:
        value = str(model_dir)
    toml_path = root_dir / WORKSPACE_FILE

    if toml_path.exists():
        old_text = _read_text(toml_path)
        old_doc = _parse(old_text, toml_path)
        # Refuse to build on a broken file (a broken `model` entry is what we replace).
        _workspace_from_doc({k: v for k, v in old_doc.items() if k != "model"}, old_text, toml_path)
        wanted = {**old_doc, "model": value}
        new_text = _set_top_level_string(old_text, "model", value)
        if new_text is None or _parse_or_none(new_text) != wanted:
            new_text = _render(wanted)  # unusual layout: rewrite (loses comments, keeps values)
    else:
        new_text = _render({"model": value}, new_file=True)
    _atomic_write_text(toml_path, new_text)
    return toml_path


# --------------------------------------------------------------------------- internals


def _under(base: Path, value: str | os.PathLike[str]) -> Path:
    """``value`` with ``~`` expanded, relative to ``base`` unless absolute."""
    path = Path(os.path.expanduser(os.fspath(value)))
    return Path(os.path.normpath(base / path))


def _fix_hint(source: str) -> str:
    """What to do about a bad model path, by where it came from."""
    if source == f"${MODEL_ENV_VAR}":
        return f"fix or unset {MODEL_ENV_VAR}"
    if source.endswith(WORKSPACE_FILE):
        return f"fix `model = ...` in {source}, or pass --model DIR"
    return "check the path, or run `ofactl pretrain` to create a model"


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise OfactlError(f"{path}: not UTF-8 text (byte {err.start})", hint="save the file as UTF-8") from None
    except OSError as err:
        raise OfactlError(f"cannot read {path}: {err.strerror or err}") from None


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = " ".join(str(err).split())
        where = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        if where:  # "file:LINE: invalid TOML: what (column N)", like a compiler
            message = f"{message[: where.start()]}{message[where.end():]} (column {where.group(2)})"
            raise OfactlError(f"{path}:{where.group(1)}: invalid TOML: {message}", hint="see https://toml.io for the syntax") from None
        raise OfactlError(f"{path}: invalid TOML: {message}", hint="see https://toml.io for the syntax") from None


def _parse_or_none(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _line_of(text: str, key: str, table: str | None = None) -> str:
    """``":N"`` for the line defining ``key`` (in ``[table]`` if given), or ``""``."""
    in_table = table is None
    key_re = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*[=.]""")
    header_re = re.compile(r"^\s*\[\s*([^\]]*?)\s*\]")
    for number, line in enumerate(text.splitlines(), start=1):
        header = header_re.match(line)
        if header:
            if table is None:
                if header.group(1).strip("\"'") == key:
                    return f":{number}"
                break
            in_table = header.group(1).strip("\"'") == table
            continue
        if in_table and key_re.match(line):
            return f":{number}"
    return ""


def _workspace_from_doc(doc: dict[str, Any], text: str, path: Path) -> Workspace:
    """Validate the parsed document against the schema and resolve its paths."""
    root = path.parent
    for key in doc:
        if key not in _KNOWN_KEYS:
            raise OfactlError(
                f"{path}{_line_of(text, key)}: unknown key '{key}'",
                hint="known keys are `model`, `results` and the `[data]` and `[slurm]` tables",
            )

    def path_value(key: str, value: Any, where: str, table: str | None = None) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise OfactlError(
                f"{path}{_line_of(text, key, table)}: {where} must be a non-empty path string, got {value!r}",
                hint=f'write it as {key} = "path"',
            )
        return _under(root, value)

    model = path_value("model", doc["model"], "`model`") if "model" in doc else None
    results = path_value("results", doc["results"], "`results`") if "results" in doc else root / DEFAULT_RESULTS
    data_table = doc.get("data", {})
    if not isinstance(data_table, dict):
        raise OfactlError(
            f"{path}{_line_of(text, 'data')}: `data` must be a table of task = \"path\" entries",
            hint='write it as [data] followed by lines such as sid = "/data/VoxCeleb1"',
        )
    data = {task: path_value(task, value, f"[data] {task}", table="data") for task, value in data_table.items()}
    slurm = doc.get("slurm", {})
    if not isinstance(slurm, dict):
        raise OfactlError(f"{path}{_line_of(text, 'slurm')}: `slurm` must be a table",
                          hint='write it as [slurm] followed by lines such as partition = "gpu"')
    for key, value in slurm.items():
        kind = SLURM_KEYS.get(key)
        if kind is None:
            raise OfactlError(f"{path}{_line_of(text, key, table='slurm')}: unknown key '{key}' in [slurm]",
                              hint=f"known keys: {', '.join(SLURM_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise OfactlError(f"{path}{_line_of(text, key, table='slurm')}: [slurm] {key} has the wrong type "
                              f"({value!r})", hint='e.g. partition = "gpu", gpus = 1, time = "4:00:00", mem = "32G"')
    return Workspace(root=root, model=model, results=results, data=data, slurm=dict(slurm))


def _toml_string(value: str) -> str:
    """A TOML basic string literal for ``value``."""
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise OfactlError(f"path {value!r} is not valid Unicode and cannot be written to {WORKSPACE_FILE}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _set_top_level_string(text: str, key: str, value: str) -> str | None:
    """Set a top-level string key by editing its line (or inserting one); None if unsure."""
    lines = text.splitlines(keepends=True)
    key_re = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    header_re = re.compile(r"^\s*\[")
    new_line = f"{_toml_key(key)} = {_toml_string(value)}"
    insert_at = len(lines)
    for index, line in enumerate(lines):
        if header_re.match(line):
            insert_at = index
            break
        if key_re.match(line):
            ending = line[len(line.rstrip("\r\n")):] or "\n"
            lines[index] = new_line + ending
            return "".join(lines)
    if insert_at == len(lines):
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(new_line + "\n")
    else:
        lines.insert(insert_at, new_line + "\n\n")
    return "".join(lines)


def _render(doc: dict[str, Any], new_file: bool = False) -> str:
    """Write a (schema-valid) workspace document as TOML."""
    out: list[str] = []
    if new_file:
        out.append("# ofactl workspace: defaults for ofactl commands run in this directory or below.\n")
        out.append("# Relative paths are relative to this file.\n")
    for key in ("model", "results"):
        if key in doc:
            out.append(f"{key} = {_toml_string(doc[key])}\n")
    if new_file:
        out.append(f'# results = "{DEFAULT_RESULTS}"\n')
        out.append("\n# Dataset root per task, used by `ofactl sweep --task TASK`:\n")
        out.append("# [data]\n")
        out.append('# sid = "/data/VoxCeleb1"\n')
    if doc.get("data"):
        out.append("\n[data]\n")
        for task, value in doc["data"].items():
            out.append(f"{_toml_key(task)} = {_toml_string(value)}\n")
    return "".join(out)


