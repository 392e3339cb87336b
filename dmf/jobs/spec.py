"""A job spec: read, check everything before any work starts, resolve.

::

    job: demo                         # a name for the run record
    root: ../demo-output/demo         # the job's output store: the run record,
                                      # and each step's result as ROOT/NAME
                                      # (relative paths: to this file's folder)
    storage_options: {}               # fsspec options for every URL
    cluster: {address: null, workers: 2, threads: 1, memory_limit: 2GiB}
    checkpoint: {every: 10, seconds: 300, damaged: start-over}   # or damaged: stop
    retries: {attempts: 2, delay: 10}
    inputs:
      ratings: data/ratings.zarr      # or {url: ..., storage_options: {...}}
    steps:
      - step: svd                     # a kind of dmf/jobs/steps.py
        name: svd                     # default: the kind
        x: ratings                    # an input or an earlier step
        k: 10                         # the options of `dmf svd`

Every error names the file and line (``job.yaml:12: ...``) and is an
:class:`~dmf.errors.InputError` (exit 2): unknown keys, wrong types, values
a command would refuse, references to nothing.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from dmf.errors import InputError
from dmf.jobs import yamlfile
from dmf.jobs.steps import KINDS, STEP_KEYS, convert, flag, options, subparser
from dmf.jobs.yamlfile import SpecError, _dotted
from dmf.nmf.beta import beta_of


@dataclass
class Step:
    """One resolved step: its checked options and what it reads/writes."""

    name: str
    kind: str
    argv: list[str]                   # the same step as a dmf command line (--dry-run shows
    #                                   it; part of the fingerprint), runner options aside
    inputs: dict[str, str]            # positional -> reference (input or step[.product])
    out: str | None                   # URL of the result
    params: dict[str, Any]            # the options as written (for the record)
    retries: int | None = None
    line: int | None = None
    values: dict[str, Any] = field(default_factory=dict)  # the options checked and converted
    #                                   by the command's parser: what the step runs with


@dataclass
class JobSpec:
    """A checked job spec (see the module docstring)."""

    path: str
    job: str
    root: str
    steps: list[Step]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    storage_options: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    retries: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    sha256: str = ""

    def products(self) -> dict[str, str]:
        """Every name a step may refer to -> its URL (inputs and outputs)."""
        urls = {name: spec["url"] for name, spec in self.inputs.items()}
        for step in self.steps:
            urls.update(_step_products(step))
        return urls

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


# -- the schema of everything but the steps' options -------------------------

def _text(v):
    return isinstance(v, str) and v != ""


def _mapping(v):
    return isinstance(v, dict)


def _int(minimum):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _number(minimum):
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v >= minimum


def _size(v):
    return _text(v) or _int(1)(v)


# key -> (check, what it must be, required)
TOP = {
    "job": (_text, "a name", True),
    "description": (_text, "text", False),
    "root": (_text, "a path or URL", True),
    "storage_options": (_mapping, "a mapping of fsspec options", False),
    "cluster": (_mapping, "a mapping", False),
    "checkpoint": (_mapping, "a mapping", False),
    "retries": (_mapping, "a mapping", False),
    "inputs": (_mapping, "a mapping of names to URLs", False),
    "steps": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list", True),
}
SECTIONS = {
    "cluster": {
        "address": (_text, "a scheduler address such as tcp://10.0.0.5:8786", False),
        "workers": (_int(0), "an integer >= 0 (0: no cluster, threads in this process)",
                    False),
        "threads": (_int(1), "a positive integer", False),
        "memory_limit": (_size, "a size such as 4GiB", False),
    },
    "checkpoint": {
        "every": (_int(1), "a positive number of iterations", False),
        "seconds": (_number(0), "a number of seconds >= 0", False),
        "damaged": (lambda v: v in ("start-over", "stop"),
                    "start-over or stop (when every checkpoint of a step is damaged)", False),
    },
    "retries": {
        "attempts": (_int(0), "an integer >= 0 (retries after the first try)", False),
        "delay": (_number(0), "a number of seconds >= 0", False),
    },
}
DEFAULT_RETRIES = {"attempts": 2, "delay": 10.0}
INPUT_KEYS = {"url": (_text, "a path or URL", True),
              "storage_options": (_mapping, "a mapping of fsspec options", False)}


def load_spec(path: str | os.PathLike, overrides: list[str] | None = None) -> JobSpec:
    """Read, check and resolve the job spec at ``path``.

    ``overrides`` are ``KEY=VALUE`` strings (``dmf run --set``): KEY a dotted
    path (``root``, ``cluster.workers``, ``steps.NAME.KEY``, ``inputs.NAME``),
    VALUE read as YAML.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "job.yaml"), "w") as f:
    ...     _ = f.write("job: j\\nroot: out\\ninputs: {X: x.zarr}\\n"
    ...             "steps:\\n  - step: svd\\n    x: X\\n    k: 0\\n")
    >>> load_spec(os.path.join(d, "job.yaml"))
    Traceback (most recent call last):
    ...
    dmf.errors.InputError: .../job.yaml:7: steps[0].k: must be positive, got 0
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the job spec ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (a job spec is YAML)") from None
    try:
        data, lines = yamlfile.load(text)
        if not isinstance(data, dict):
            raise SpecError("a job spec is a mapping (job:, root:, steps: ...)", 1)
        data, lines = _apply_overrides(data, lines, overrides or [])
        _relative_to(os.path.dirname(os.path.abspath(path)), data, lines)
        spec = _check(data, lines, path)
    except SpecError as exc:
        where = f"{path}:{exc.line}" if exc.line else path
        raise InputError(f"{where}: {exc}") from None
    spec.sha256 = hashlib.sha256(raw + "\n".join(overrides or []).encode()).hexdigest()
    return spec


# -- paths ----------------------------------------------------------------------

def _relative_to(folder: str, data: dict, lines: dict) -> None:
    """Make the relative local paths the file gives (``root:``, inputs'
    URLs, steps' ``out:``) relative to the job file's folder, so that a job
    writes to the same place from any working directory. Values given with
    ``--set`` stay relative to the working directory, like any argument."""

    def resolve(value, path: tuple):
        if (not isinstance(value, str) or not value or "://" in value
                or os.path.isabs(value) or lines.get(path) == OVERRIDE_LINE):
            return value
        return os.path.normpath(os.path.join(folder, value))

    if "root" in data:
        data["root"] = resolve(data["root"], ("root",))
    for name, value in (data.get("inputs") or {}).items() if isinstance(
            data.get("inputs"), dict) else ():
        if isinstance(value, dict) and "url" in value:
            value["url"] = resolve(value["url"], ("inputs", name, "url"))
        else:
            data["inputs"][name] = resolve(value, ("inputs", name))
    for i, step in enumerate(data.get("steps") or []) if isinstance(
            data.get("steps"), list) else ():
        if isinstance(step, dict) and "out" in step:
            step["out"] = resolve(step["out"], ("steps", i, "out"))


# -- overrides ------------------------------------------------------------------

OVERRIDE_LINE = 0  # marks values that came from --set, not from the file


def _apply_overrides(data: dict, lines: dict, overrides: list[str]) -> tuple[dict, dict]:
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. "
                            "steps.nmf.max_iter=50")
        try:
            value = yamlfile.load(text)[0] if text.strip() else None
        except SpecError as exc:
            raise SpecError(f"--set {key}: {exc}") from None
        parts = key.split(".")
        target: Any = data
        path: tuple = ()
        for i, part in enumerate(parts[:-1]):
            if path == ("steps",) and isinstance(target, list):
                index = next((j for j, s in enumerate(target) if isinstance(s, dict)
                              and (s.get("name") or s.get("step")) == part), None)
                if index is None:
                    raise SpecError(f"--set {key}: no step named {part!r}")
                target, path = target[index], (*path, index)
                continue
            if not isinstance(target, dict):
                raise SpecError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
            target = target.setdefault(part, {})
            path = (*path, part)
        if not isinstance(target, dict):
            raise SpecError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")
        target[parts[-1]] = value
        lines[(*path, parts[-1])] = OVERRIDE_LINE
    return data, lines


# -- checking -----------------------------------------------------------------

def _line(lines: dict, path: tuple) -> int | None:
    while True:
        if path in lines:
            return lines[path] or None
        if not path:
            return None
        path = path[:-1]


def _check_keys(value: dict, schema: dict, path: tuple, lines: dict, what: str) -> None:
    for key in value:
        if key not in schema:
            known = ", ".join(schema)
            raise SpecError(f"{_dotted((*path, key))}: unknown key in {what} (known: {known})",
                            _line(lines, (*path, key)))
    for key, (check, must, required) in schema.items():
        if key not in value or value[key] is None:
            if required:
                raise SpecError(f"{what} needs {_dotted((*path, key))}: {must}",
                                _line(lines, path))
            continue
        if not check(value[key]):
            raise SpecError(f"{_dotted((*path, key))}: must be {must}, got {value[key]!r}",
                            _line(lines, (*path, key)))


def _check(data: dict, lines: dict, path: str) -> JobSpec:
    _check_keys(data, TOP, (), lines, "the job")
    sections = {}
    for name, schema in SECTIONS.items():
        section = data.get(name) or {}
        _check_keys(section, schema, (name,), lines, name)
        sections[name] = {k: v for k, v in section.items() if v is not None}
    storage_options = data.get("storage_options") or {}
    inputs = {}
    for name, value in (data.get("inputs") or {}).items():
        where = ("inputs", name)
        entry = {"url": value} if isinstance(value, str) else value
        if not isinstance(entry, dict):
            raise SpecError(f"inputs.{name}: must be a URL or a mapping with url:",
                            _line(lines, where))
        _check_keys(entry, INPUT_KEYS, where, lines, f"input {name}")
        inputs[name] = {"url": entry["url"],
                        "storage_options": entry.get("storage_options") or storage_options}
    root = data["root"].rstrip("/") or data["root"]
    steps: list[Step] = []
    for i, raw in enumerate(data["steps"]):
        steps.append(_check_step(raw, i, lines, root, inputs, steps))
    spec = JobSpec(path=path, job=data["job"], root=root, steps=steps, inputs=inputs,
                   storage_options=storage_options, cluster=sections["cluster"],
                   checkpoint=sections["checkpoint"],
                   retries={**DEFAULT_RETRIES, **sections["retries"]},
                   description=data.get("description") or "")
    return spec


def _check_step(raw: Any, i: int, lines: dict, root: str, inputs: dict,
                earlier: list[Step]) -> Step:
    where = ("steps", i)
    line = _line(lines, where)
    if not isinstance(raw, dict):
        raise SpecError(f"steps[{i}]: a step is a mapping with step: KIND", line)
    kind = raw.get("step")
    if kind not in KINDS:
        raise SpecError(f"steps[{i}].step: must be one of {', '.join(KINDS)}, got {kind!r}",
                        _line(lines, (*where, "step")) or line)
    name = raw.get("name", kind)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise SpecError(f"steps[{i}].name: must be letters, digits, - and _, got {name!r}",
                        _line(lines, (*where, "name")))
    if name in inputs or any(s.name == name for s in earlier):
        raise SpecError(f"steps[{i}]: the name {name!r} is taken (by an input or an earlier "
                        "step); give this step a name: of its own", line)
    retries = raw.get("retries")
    if retries is not None and not _int(0)(retries):
        raise SpecError(f"steps[{i}].retries: must be an integer >= 0, got {retries!r}",
                        _line(lines, (*where, "retries")))
    spec = KINDS[kind]
    keys = {k.replace("-", "_"): v for k, v in raw.items() if k not in STEP_KEYS}
    key_lines = {k.replace("-", "_"): _line(lines, (*where, k)) for k in raw}
    if kind == "report":
        return _check_report(name, keys, key_lines, line, root, earlier, i)
    refs = _references(inputs, earlier)
    sub_kind = keys.pop("kind", "lowrank") if kind == "generate" else None
    if kind == "generate" and sub_kind not in ("lowrank", "ratings"):
        raise SpecError(f"steps[{i}].kind: must be lowrank or ratings, got {sub_kind!r}",
                        key_lines.get("kind"))
    parser = subparser(kind, sub_kind)
    allowed = options(parser)
    if kind == "nmtf":
        allowed.pop("factors")
    step_inputs = {}
    for positional in spec.inputs:
        ref = keys.pop(positional, None)
        if ref is None:
            raise SpecError(f"steps[{i}] ({kind}) needs {positional}: the name of an input "
                            f"or an earlier step ({_names(refs)})", line)
        if ref not in refs:
            raise SpecError(f"steps[{i}].{positional}: {ref!r} is neither an input nor an "
                            f"earlier step's result ({_names(refs)})", key_lines[positional])
        step_inputs[positional] = ref
    out = keys.pop("out", None)
    if spec.out is None and out is not None:
        raise SpecError(f"steps[{i}].out: a {kind} step writes no store",
                        key_lines["out"])
    if out is not None and not _text(out):
        raise SpecError(f"steps[{i}].out: must be a path or URL, got {out!r}", key_lines["out"])
    if spec.out is not None and out is None:
        out = f"{root}/{name}"
    argv = [*spec.command, *([sub_kind] if sub_kind else [])]
    argv += [f"{{{p}}}" for p in spec.inputs]  # filled with URLs when the step runs
    if spec.out == "out":
        argv.append(out)
    params, values = {}, {}
    for key, value in keys.items():
        action = allowed.get(key)
        if action is None:
            known = ", ".join(sorted([*spec.inputs, *(["out"] if spec.out else []),
                                      *allowed, *(["kind"] if kind == "generate" else [])]))
            raise SpecError(f"steps[{i}].{key}: unknown key for a {kind} step (known: "
                            f"{known})", key_lines.get(key))
        if value is None:
            continue
        try:
            values[key] = convert(action, value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise SpecError(f"steps[{i}].{key}: {exc}", key_lines.get(key)) from None
        argv += _option_argv(action, value)
        check = VALUE_CHECKS.get(key) if kind in ("nmf", "nmtf") else None
        if check is not None:
            check(value, f"steps[{i}].{key}", key_lines.get(key))
        params[key] = value
    if kind == "nmtf":
        argv += ["--factors", "3"]
        values["factors"] = 3
    if spec.out == "--out":
        argv += ["--out", out]
    _check_required(parser, params, i, kind, line)
    return Step(name=name, kind=kind, argv=argv, inputs=step_inputs, out=out,
                params={**({"kind": sub_kind} if sub_kind else {}), **params},
                retries=retries, line=line,
                values={**({"kind": sub_kind} if sub_kind else {}), **values})


def _option_argv(action: argparse.Action, value: Any) -> list[str]:
    """A checked option on the command line (``--max-iter 50``)."""
    option = flag(action)
    if isinstance(action, argparse._StoreTrueAction):
        return [option] if value else []
    if isinstance(action, argparse.BooleanOptionalAction):
        return [option if not value else min(action.option_strings, key=len)]
    items = value if isinstance(action, argparse._AppendAction) and isinstance(value, list) \
        else [value]
    return [part for item in items for part in (option, str(item))]


def _check_loss(value: Any, where: str, line: int | None) -> None:
    """The loss of an NMF step is checked with the spec, not when the step starts."""
    if value == "l1":
        return
    try:
        beta_of(value)
    except InputError as exc:
        raise SpecError(f"{where}: {exc}", line) from None


VALUE_CHECKS = {"loss": _check_loss}


def _check_required(parser, params: dict, i: int, kind: str, line: int | None) -> None:
    for action in parser._actions:
        if action.required and action.option_strings and action.dest not in params:
            raise SpecError(f"steps[{i}] ({kind}) needs {action.dest}: "
                            f"{action.help or flag(action)}", line)


def _check_report(name, keys, key_lines, line, root, earlier, i) -> Step:
    wanted = keys.pop("steps", None)
    out = keys.pop("out", None) or f"{root}/{name}.md"
    if keys:
        key = next(iter(keys))
        raise SpecError(f"steps[{i}].{key}: unknown key for a report step (known: steps, out)",
                        key_lines.get(key))
    names = [s.name for s in earlier]
    if wanted is None:
        wanted = names
    if not isinstance(wanted, list) or any(w not in names for w in wanted):
        raise SpecError(f"steps[{i}].steps: must list earlier steps ({', '.join(names)})",
                        key_lines.get("steps") or line)
    return Step(name=name, kind="report", argv=[], inputs={}, out=out,
                params={"steps": wanted}, line=line)


def _references(inputs: dict, earlier: list[Step]) -> set[str]:
    refs = set(inputs)
    for step in earlier:
        refs.update(_step_products(step))
    return refs


def _step_products(step: Step) -> dict[str, str]:
    kind = KINDS[step.kind]
    if step.out is None or step.kind == "report":
        return {}
    if kind.products:
        return {f"{step.name}.{p}": f"{step.out}/{sub}" for p, sub in kind.products.items()}
    return {step.name: step.out}


def _names(refs: set[str]) -> str:
    return "known: " + ", ".join(sorted(refs)) if refs else "there are none yet"
