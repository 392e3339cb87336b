"""The deployment files (deploy/) and job specs (pipelines/) parse, validate,
and every dmf command line written in them is accepted by dmf.

Fast (no container, cluster or store is started): each file is parsed with
the parser of its tool or checked for the structure its tool requires, and
each ``dmf`` command found in the files is run in-process through
``dmf.cli.main``: ``dmf run ...`` with ``--dry-run`` appended (the container
path ``/opt/dmf/`` read as this checkout), other commands with ``--help``.

tests/data/compose-spec.json is the Compose Specification's JSON schema,
schema/compose-spec.json of https://github.com/compose-spec/compose-spec
(commit 00655e2222608fa6eaecdf12ac5195889ca2244a), copied unchanged under its
Apache License 2.0. Where the docker CLI with its compose plugin is on PATH,
``docker compose config -q`` checks deploy/compose.yaml as well.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import jsonschema
import pytest
import yaml

from dmf.cli import main

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PIPELINES = REPO / "pipelines"
CONTAINER_ROOT = "/opt/dmf/"  # where the image (and the systemd unit) keeps the checkout


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


ALL_FILES = _files(DEPLOY) + _files(PIPELINES)
YAML_FILES = [p for p in ALL_FILES if p.suffix in (".yaml", ".yml")]
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))


def _yaml_docs(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# -- every file parses ----------------------------------------------------------

def test_deploy_has_its_files():
    expected = ["docker/Dockerfile", "compose.yaml", "k8s/daskjob.yaml", "k8s/cronjob.yaml",
                "k8s/rbac.yaml", "helm/values.yaml", "slurm/dmf-nightly.sbatch",
                "systemd/dmf-nightly.service", "systemd/dmf-nightly.timer", "README.md"]
    missing = [name for name in expected if not (DEPLOY / name).is_file()]
    assert not missing


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path):
    assert _yaml_docs(path), f"{_rel(path)} holds no YAML document"


# -- compose ------------------------------------------------------------------

def test_compose_validates_against_the_compose_schema():
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
    (doc,) = _yaml_docs(DEPLOY / "compose.yaml")
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(doc)]
    assert not errors


def test_compose_services_fit_together():
    (doc,) = _yaml_docs(DEPLOY / "compose.yaml")
    services = doc["services"]
    assert {"minio", "create-bucket", "scheduler", "worker", "dmf"} <= set(services)
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    worker_count = services["worker"].get("deploy", {}).get("replicas", 1)
    assert worker_count == 2
    # The job and the workers both reach the object store.
    for name in ("dmf", "worker"):
        env = services[name]["environment"]
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FSSPEC_S3_ENDPOINT_URL"} <= set(env)
    job = services["dmf"]
    assert job["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert job["command"][:2] == ["dmf", "run"]


def test_docker_compose_config():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        check=False).returncode != 0:
        pytest.skip("docker compose is not installed: compose.yaml checked by its schema only")
    result = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config",
                             "-q"], capture_output=True, text=True, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr


# -- Kubernetes -----------------------------------------------------------------

def _k8s_objects() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in K8S_FILES for doc in _yaml_docs(path)]


def _pod_specs(obj: dict) -> list[dict]:
    """The PodSpecs inside a workload object."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind == "Job":
        return [spec["template"]["spec"]]
    if kind == "DaskJob":
        cluster = spec["cluster"]["spec"]
        return [spec["job"]["spec"], cluster["worker"]["spec"], cluster["scheduler"]["spec"]]
    return []


def test_k8s_objects_have_api_version_kind_and_name():
    objects = _k8s_objects()
    assert objects
    for path, obj in objects:
        where = f"{_rel(path)}: {obj.get('kind')}"
        assert obj.get("apiVersion"), where
        assert obj.get("kind"), where
        assert obj.get("metadata", {}).get("name"), where


def test_k8s_containers_have_image_and_command():
    n_pods = 0
    for path, obj in _k8s_objects():
        for pod in _pod_specs(obj):
            n_pods += 1
            assert pod["containers"], _rel(path)
            for container in pod["containers"]:
                where = f"{_rel(path)}: {obj['kind']} container {container.get('name')}"
                assert container.get("name"), where
                assert container.get("image"), where
                # args keeps the image's entrypoint (tini), which forwards SIGTERM
                assert container.get("command") or container.get("args"), where
    assert n_pods >= 4


def test_k8s_cronjob():
    objects = _k8s_objects()
    cronjobs = [obj for _, obj in objects if obj["kind"] == "CronJob"]
    assert cronjobs
    accounts = {obj["metadata"]["name"] for _, obj in objects if obj["kind"] == "ServiceAccount"}
    for cron in cronjobs:
        spec = cron["spec"]
        assert cron["apiVersion"] == "batch/v1"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert len(spec["schedule"].split()) == 5
        job = spec["jobTemplate"]["spec"]
        pod = job["template"]["spec"]
        assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
        assert pod["serviceAccountName"] in accounts
        names = {c["name"] for c in pod["containers"]}
        codes = {}
        for rule in job["podFailurePolicy"]["rules"]:
            if "onExitCodes" in rule:
                assert rule["onExitCodes"]["containerName"] in names
                for code in rule["onExitCodes"]["values"]:
                    codes[code] = rule["action"]
        # the exit-code contract: 2 and 3 are not retried, 130/143 resume
        assert codes[2] == codes[3] == "FailJob"
        assert codes[130] == codes[143] == "Ignore"


def test_k8s_rbac_names_tie_together():
    objects = _k8s_objects()
    by_kind: dict[str, dict[str, dict]] = {}
    for _, obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    assert by_kind.get("ServiceAccount") and by_kind.get("Role") and by_kind.get("RoleBinding")
    for name, binding in by_kind["RoleBinding"].items():
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        assert ref["name"] in by_kind.get(ref["kind"], {}), f"RoleBinding {name}"
        namespace = binding["metadata"].get("namespace")
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount":
                account = by_kind["ServiceAccount"].get(subject["name"])
                assert account is not None, f"RoleBinding {name}: {subject['name']}"
                assert subject.get("namespace") == account["metadata"].get("namespace") \
                    == namespace
    for name, role in by_kind["Role"].items():
        for rule in role["rules"]:
            assert rule["verbs"] and rule["resources"] and "apiGroups" in rule, f"Role {name}"


def test_k8s_daskjob():
    daskjobs = [obj for _, obj in _k8s_objects() if obj["kind"] == "DaskJob"]
    assert daskjobs
    for job in daskjobs:
        assert job["apiVersion"] == "kubernetes.dask.org/v1"
        spec = job["spec"]
        assert spec["job"]["spec"]["containers"]
        cluster = spec["cluster"]["spec"]
        assert cluster["worker"]["replicas"] >= 1
        service = cluster["scheduler"]["service"]
        assert service["selector"]["dask.org/cluster-name"] == job["metadata"]["name"]
        assert {p["port"] for p in service["ports"]} >= {8786}


def test_helm_values():
    (values,) = _yaml_docs(DEPLOY / "helm" / "values.yaml")
    assert {"scheduler", "worker", "jupyter"} <= set(values)
    scheduler, worker = values["scheduler"], values["worker"]
    assert scheduler["image"]["repository"] == worker["image"]["repository"]
    assert str(scheduler["image"]["tag"]) == str(worker["image"]["tag"])
    assert isinstance(worker["replicas"], int) and worker["replicas"] >= 1
    assert worker["resources"]["limits"]["memory"]
    assert {e["name"] for e in worker["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert values["jupyter"]["enabled"] is False


# -- Dockerfile -----------------------------------------------------------------

DOCKERFILE_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


def _logical_lines(text: str, comment: str = "#") -> list[str]:
    """Lines with backslash continuations joined, comment and blank lines dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith(comment)):
            continue
        if current and stripped.startswith(comment):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def test_dockerfile():
    instructions = _logical_lines((DEPLOY / "docker" / "Dockerfile").read_text())
    keywords = [line.split(None, 1)[0].upper() for line in instructions]
    assert keywords[0] == "FROM"
    assert set(keywords) <= DOCKERFILE_INSTRUCTIONS, set(keywords) - DOCKERFILE_INSTRUCTIONS
    image = instructions[0].split()[1]
    assert re.fullmatch(r"ghcr\.io/dask/dask:\d{4}\.\d+\.\d+-py3\.\d+", image), image
    assert any(re.fullmatch(r"COPY \. /opt/dmf/?", line) for line in instructions)
    assert any("pip install" in line and "/opt/dmf[s3]" in line for line in instructions)
    assert (DEPLOY / "docker" / "Dockerfile.dockerignore").is_file()


# -- systemd --------------------------------------------------------------------

def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_systemd_service():
    unit = _unit("dmf-nightly.service")
    assert {"Unit", "Service"} <= set(unit.sections())
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    argv = shlex.split(service["ExecStart"].lstrip("-@:+!"))
    assert Path(argv[0]).name == "dmf" and argv[1] == "run"
    assert "3" in service["SuccessExitStatus"].split()


def test_systemd_timer():
    unit = _unit("dmf-nightly.timer")
    assert {"Unit", "Timer", "Install"} <= set(unit.sections())
    timer = unit["Timer"]
    assert timer["OnCalendar"]
    assert timer["Persistent"] == "true"
    assert timer.get("Unit", "dmf-nightly.service") == "dmf-nightly.service"
    assert unit["Install"]["WantedBy"] == "timers.target"
    analyze = shutil.which("systemd-analyze")
    if analyze:
        result = subprocess.run([analyze, "calendar", timer["OnCalendar"]], capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0, result.stderr


# -- SLURM ----------------------------------------------------------------------

def test_sbatch_script():
    path = DEPLOY / "slurm" / "dmf-nightly.sbatch"
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#!")
    directives = [line.split(None, 1)[1] for line in lines if line.startswith("#SBATCH")]
    assert "--requeue" in directives
    assert any(re.fullmatch(r"--signal=B:TERM@\d+", d) for d in directives)
    # sbatch stops reading directives at the first command
    first_command = next(i for i, line in enumerate(lines)
                         if line.strip() and not line.startswith("#"))
    assert max(i for i, line in enumerate(lines) if line.startswith("#SBATCH")) < first_command


# -- every dmf command line -------------------------------------------------------

COMMAND_KEYS = {"command", "args", "entrypoint"}
SHELL_SPLIT = re.compile(r"\s(?:&&|\|\||;|\||&)(?:\s|$)")
VAR = re.compile(r"^\$\{?(\w+|@)(?::-([^}]*))?\}?$")


def _is_dmf(token: str) -> bool:
    return isinstance(token, str) and (token == "dmf" or token.endswith("/bin/dmf"))


def _commands_in_shell_line(line: str) -> list[list[str]]:
    found = []
    for segment in SHELL_SPLIT.split(f" {line} "):
        try:
            tokens = shlex.split(segment, comments=True)  # "dmf run X  # note"
        except ValueError:
            continue
        if tokens and _is_dmf(tokens[0]):
            found.append(tokens)
    return found


def _commands_in_yaml(node) -> list[list[str]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in COMMAND_KEYS and isinstance(value, str):
                found += _commands_in_shell_line(value)
            else:
                found += _commands_in_yaml(value)
    elif isinstance(node, list):
        starts = [i for i, item in enumerate(node) if isinstance(item, str) and _is_dmf(item)]
        if starts and all(isinstance(item, str) for item in node):
            found.append(node[starts[0]:])
        else:
            for item in node:
                found += _commands_in_yaml(item)
    return found


def _markdown_code_lines(text: str) -> list[str]:
    lines, fenced = [], False
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or raw.startswith("    "):
            lines.append(raw.strip().removeprefix("$ "))
    return lines


def _shell_assignments(text: str) -> dict[str, str]:
    """NAME=value and NAME=${1:-default} of a shell script, for its dmf lines."""
    values = {}
    for match in re.finditer(r"^(\w+)=(\S+)", text, re.MULTILINE):
        name, value = match.groups()
        default = re.fullmatch(r"\$\{\w+:-([^}$]*)\}", value)
        if default:
            values[name] = default.group(1)
        elif "$" not in value:
            values[name] = value.strip("\"'")
    return values


def _resolve(tokens: list[str], variables: dict[str, str]) -> list[str] | None:
    """Shell variables in a command: known values, '$@' dropped; None when one
    cannot be known (except a scheduler address, which a dry run ignores)."""
    out = []
    for i, token in enumerate(tokens):
        match = VAR.match(token)
        if not match:
            out.append(token)
        elif match.group(1) == "@":
            continue
        elif match.group(1) in variables:
            out.append(variables[match.group(1)])
        elif match.group(2) is not None:
            out.append(match.group(2))
        elif i and tokens[i - 1] == "--scheduler":
            out.append("tcp://127.0.0.1:8786")
        else:
            return None
    return out


UNRESOLVED: list[str] = []


def _dmf_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after 'dmf') for each dmf command line in deploy/ and pipelines/."""
    found = []
    for path in ALL_FILES:
        text = path.read_text(errors="replace")
        if "dmf" not in text:
            continue
        if path.suffix in (".yaml", ".yml"):
            commands = [cmd for doc in _yaml_docs(path) for cmd in _commands_in_yaml(doc)]
        else:
            if path.suffix == ".md":
                lines = _markdown_code_lines(text)
            elif path.name == "Dockerfile":
                lines = []
                for line in _logical_lines(text):
                    keyword, _, rest = line.partition(" ")
                    if rest.startswith("["):
                        lines.append(shlex.join(json.loads(rest)))
                    elif keyword.upper() in ("RUN", "CMD", "ENTRYPOINT"):
                        lines.append(rest)
            elif path.suffix in (".service", ".timer"):
                lines = [line.split("=", 1)[1].lstrip("-@:+!") for line in _logical_lines(text)
                         if re.match(r"Exec\w+=", line)]
            else:
                lines = _logical_lines(text)
            variables = _shell_assignments(text)
            commands = []
            for line in lines:
                for cmd in _commands_in_shell_line(line):
                    resolved = _resolve(cmd, variables)
                    if resolved is None:
                        UNRESOLVED.append(f"{_rel(path)}: {shlex.join(cmd)}")
                    else:
                        commands.append(resolved)
        for cmd in commands:
            words = cmd[1:]
            # a synopsis (dmf run JOB.yaml [--set KEY=VALUE ...]) is not a command line
            if any("..." in w or w.startswith("[") or re.fullmatch(r"[A-Z][A-Z_]*(\.yaml)?", w)
                   for w in words):
                continue
            found.append((f"{_rel(path)}: {shlex.join(cmd)}", words))
    return found


DMF_COMMANDS = _dmf_commands()


def _local_path(word: str) -> str:
    if word.startswith(CONTAINER_ROOT):
        return str(REPO / word[len(CONTAINER_ROOT):])
    if word.endswith((".yaml", ".yml")) and not word.startswith("-") and "=" not in word \
            and (REPO / word).exists():
        return str(REPO / word)
    return word


def test_deploy_files_hold_dmf_commands():
    assert not UNRESOLVED, "shell variables with no known value"
    where = {entry.split(":")[0] for entry, _ in DMF_COMMANDS}
    for name in ("compose.yaml", "k8s/daskjob.yaml", "k8s/cronjob.yaml",
                 "slurm/dmf-nightly.sbatch", "systemd/dmf-nightly.service"):
        assert f"deploy/{name}" in where, name


@pytest.mark.parametrize("where,argv", DMF_COMMANDS, ids=[w for w, _ in DMF_COMMANDS])
def test_dmf_command_is_accepted(where, argv, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    # The files point dmf at a scheduler through the environment too.
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    if argv and argv[0] == "run":
        argv = [_local_path(w) for w in argv] + ["--dry-run"]
    elif "--help" not in argv and "--version" not in argv:
        argv = [*argv, "--help"]
    show = warnings.showwarning  # dmf's main installs its own warning printer
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as exc:
        code = exc.code
    finally:
        warnings.showwarning = show
    assert code == 0, f"{where}\n{capsys.readouterr().err}"
