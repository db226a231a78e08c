"""The six Dockerfiles, parsed and linted by BuildKit's own Dockerfile frontend (the checks of
``docker build --check``) through deploy-check, then held to the project's image rules."""

from __future__ import annotations

import glob
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devicefleet_ingest.bridge.settings import BridgeSettings
from devicefleet_ingest.settings import IngestSettings
from devicefleet_operator.settings import Settings as OperatorSettings
from devicefleet_processor.settings import Settings as ProcessorSettings
from devicefleet_simulator.settings import Settings as SimulatorSettings
from devicefleet_sink.settings import Settings as SinkSettings
from tests.support import REPO
from tests.unit.deploy.conftest import DeployCheck

# Workspace member with a Dockerfile -> the settings classes of the processes its image runs
# and the (settings class, field) of every port those processes listen on by default.
SettingsClass = Any
MEMBERS: dict[str, tuple[list[SettingsClass], list[tuple[SettingsClass, str]]]] = {
    "services/simulator": ([SimulatorSettings], [(SimulatorSettings, "status_port")]),
    "services/ingest": (
        [IngestSettings, BridgeSettings],
        [(IngestSettings, "port"), (BridgeSettings, "metrics_port")],
    ),
    "services/processor": ([ProcessorSettings], [(ProcessorSettings, "metrics_port")]),
    "services/sink": ([SinkSettings], [(SinkSettings, "metrics_port")]),
    "services/bootstrap": ([], []),  # a Job: serves nothing
    "operator": (
        [OperatorSettings],
        [(OperatorSettings, "metrics_port"), (OperatorSettings, "liveness_port")],
    ),
}
DOCKERFILES = [f"{member}/Dockerfile" for member in MEMBERS]

PYTHON_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")
UV_IMAGE = re.compile(r"^ghcr\.io/astral-sh/uv:(\d+\.\d+\.\d+)$")


def pyproject(member: str) -> dict[str, Any]:
    with (REPO / member / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def workspace_members() -> list[str]:
    root = pyproject(".")
    members: list[str] = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for path in sorted(glob.glob(pattern, root_dir=REPO)):
            if (REPO / path / "pyproject.toml").is_file():
                members.append(path)
    return members


def uv_pin() -> str:
    """The uv version the project installs (Makefile), which the builder stage must match."""
    match = re.search(r"uv==(\d+\.\d+\.\d+)", (REPO / "Makefile").read_text())
    assert match, "Makefile pins no uv version"
    return match.group(1)


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


@pytest.fixture(scope="module")
def parsed(deploy_check: DeployCheck) -> dict[str, dict[str, Any]]:
    """Every Dockerfile as BuildKit parses it; the whole set must lint clean."""
    result = deploy_check.run("dockerfile", "--context", ".", *DOCKERFILES)
    assert result.returncode == 0, "BuildKit lint findings:\n" + result.stderr
    return {entry["file"]: entry for entry in json.loads(result.stdout)}


def instructions(stage: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [i for i in stage["instructions"] if i["instruction"] == name]


def test_buildkit_lints_every_dockerfile_clean(parsed: dict[str, dict[str, Any]]) -> None:
    assert sorted(parsed) == sorted(DOCKERFILES)
    for file, entry in parsed.items():
        assert entry["findings"] == [], file


def test_the_checker_reports_what_docker_build_check_reports(
    deploy_check: DeployCheck, tmp_path: Path
) -> None:
    """The lint path is live: known mistakes come back as BuildKit's rule names."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:3.11 as base\n"
        "ENV FOO bar\n"
        "COPY tests/unit /x\n"
        "COPY no-such-file.txt /y\n"
        'CMD python -c "print(1)"\n'
    )
    result = deploy_check.run("dockerfile", "--context", ".", str(bad))
    assert result.returncode == 1
    for rule in (
        "FromAsCasing",
        "LegacyKeyValueFormat",
        "CopyIgnoredFile",
        "CopySourceMissing",
        "JSONArgsRecommended",
    ):
        assert rule in result.stderr, result.stderr


def test_dockerignore_keeps_out_what_no_image_needs() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".git", ".venv", "tests", "docs", "bench", "**/__pycache__", ".mypy_cache"):
        assert needed in patterns
    # An exception ("!") would switch off BuildKit's CopyIgnoredFile check.
    assert not [p for p in patterns if p.startswith("!")]


@pytest.mark.parametrize("member", list(MEMBERS))
def test_two_stages_on_pinned_bases(member: str, parsed: dict[str, dict[str, Any]]) -> None:
    stages = parsed[f"{member}/Dockerfile"]["stages"]
    names = [s["name"] for s in stages]
    assert names == ["uv", "builder", "runtime"], names
    uv, builder, runtime = stages
    match = UV_IMAGE.match(uv["base"])
    assert match, f"uv image not pinned to a version: {uv['base']}"
    assert match.group(1) == uv_pin(), "the uv image must be the uv version of the Makefile"
    assert PYTHON_BASE.match(builder["base"]), builder["base"]
    # The venv's interpreter is the base image's /usr/local/bin/python3.11: same image twice.
    assert runtime["base"] == builder["base"]


def test_all_images_share_one_python_base(parsed: dict[str, dict[str, Any]]) -> None:
    bases = {s["base"] for entry in parsed.values() for s in entry["stages"] if s["name"] != "uv"}
    assert len(bases) == 1, bases


@pytest.mark.parametrize("member", list(MEMBERS))
def test_builder_installs_the_member_from_the_lockfile(
    member: str, parsed: dict[str, dict[str, Any]]
) -> None:
    builder = parsed[f"{member}/Dockerfile"]["stages"][1]
    project = pyproject(member)["project"]["name"]
    copied = [src for c in instructions(builder, "COPY") if not c.get("from") for src in c["args"]]
    assert "uv.lock" in copied
    assert "pyproject.toml" in copied
    # uv reads the whole workspace: every member's pyproject.toml must be there.
    for workspace_member in workspace_members():
        assert f"{workspace_member}/pyproject.toml" in copied, workspace_member
    # The member's code and the workspace members it depends on (the shared kernel; the
    # operator also the bootstrap package it registers devices with), nothing else. A missing
    # one would build fine and fail at import time in the pod.
    paths = {pyproject(m)["project"]["name"]: m for m in workspace_members()}
    sources = pyproject(member).get("tool", {}).get("uv", {}).get("sources", {})
    workspace_deps = {paths[name] for name, source in sources.items() if source.get("workspace")}
    assert "services/common" in workspace_deps
    assert {src for src in copied if src.endswith("/src")} == {
        f"{member}/src",
        *(f"{dep}/src" for dep in workspace_deps),
    }
    env = {k: v for e in instructions(builder, "ENV") for k, v in e["values"].items()}
    assert env["UV_COMPILE_BYTECODE"] == "1"
    assert env["UV_LINK_MODE"] == "copy"
    assert env["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"
    syncs = [r for r in instructions(builder, "RUN") if "uv sync" in " ".join(r["args"])]
    assert len(syncs) == 2, "dependencies first (cached layer), then the workspace packages"
    for run in syncs:
        command = " ".join(run["args"]).split()
        for flag in ("--frozen", "--no-dev", "--no-editable"):
            assert flag in command, (flag, command)
        assert command[command.index("--package") + 1] == project
        assert {"type": "cache", "target": "/root/.cache/uv"} in run.get("mounts", [])


@pytest.mark.parametrize("member", list(MEMBERS))
def test_runtime_is_the_venv_as_a_numeric_non_root_user(
    member: str, parsed: dict[str, dict[str, Any]]
) -> None:
    runtime = parsed[f"{member}/Dockerfile"]["stages"][-1]
    copies = instructions(runtime, "COPY")
    assert [(c["from"], c["args"], c["dest"]) for c in copies] == [
        ("builder", ["/app/.venv"], "/app/.venv")
    ]
    users = instructions(runtime, "USER")
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1]["user"]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER must be numeric uid[:gid], got {user}"
    assert all(int(part) != 0 for part in user.split(":")), user
    # ... with a passwd entry: getpass.getuser() (kopf, yoyo) fails for an unknown uid, as
    # the first run in real pods showed.
    runs = [" ".join(r["args"]) for r in instructions(runtime, "RUN")]
    uid = user.split(":")[0]
    assert any(re.search(rf"\buseradd\b.*--uid {uid}\b", run) for run in runs), runs
    env = {k: v for e in instructions(runtime, "ENV") for k, v in e["values"].items()}
    assert env["PATH"].startswith("/app/.venv/bin:")
    assert env["PYTHONUNBUFFERED"] == "1"


@pytest.mark.parametrize("member", list(MEMBERS))
def test_entrypoint_is_the_members_console_script(
    member: str, parsed: dict[str, dict[str, Any]]
) -> None:
    runtime = parsed[f"{member}/Dockerfile"]["stages"][-1]
    project = pyproject(member)["project"]
    (entrypoint,) = instructions(runtime, "ENTRYPOINT")
    assert entrypoint["execForm"], "ENTRYPOINT must be JSON (exec) form: signals reach the service"
    assert entrypoint["args"] == [project["name"]]
    assert project["name"] in project["scripts"]
    assert not instructions(runtime, "CMD")


@pytest.mark.parametrize("member", list(MEMBERS))
def test_labels_ports_and_bind_addresses(member: str, parsed: dict[str, dict[str, Any]]) -> None:
    runtime = parsed[f"{member}/Dockerfile"]["stages"][-1]
    labels = {k: unquote(v) for e in instructions(runtime, "LABEL") for k, v in e["values"].items()}
    assert labels["org.opencontainers.image.title"] == pyproject(member)["project"]["name"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://github.com/")

    settings_classes, port_fields = MEMBERS[member]
    exposed = sorted(int(p) for e in instructions(runtime, "EXPOSE") for p in e["args"])
    assert exposed == sorted(cls.model_fields[f].default for cls, f in port_fields)

    # Any other ENV is a listen address of one of the image's services, opened to the pod.
    env = {k: v for e in instructions(runtime, "ENV") for k, v in e["values"].items()}
    known = {
        f"{cls.model_config['env_prefix']}{field}".upper()
        for cls in settings_classes
        for field in cls.model_fields
        if field.endswith("host")
    }
    for key, value in env.items():
        if key in ("PATH", "PYTHONUNBUFFERED"):
            continue
        assert key in known, f"{key} is not a listen-address setting of {member}"
        assert value == "0.0.0.0"


def test_ingest_image_also_carries_the_bridge() -> None:
    """The chart runs the bridge from the ingest image with command devicefleet-bridge."""
    assert "devicefleet-bridge" in pyproject("services/ingest")["project"]["scripts"]


def test_bootstrap_migrations_are_package_data() -> None:
    """--no-editable installs a wheel: the migrations must live inside the package."""
    migrations = REPO / "services/bootstrap/src/devicefleet_bootstrap/migrations"
    assert sorted(p.name for p in migrations.glob("0*.py"))
    wheel = pyproject("services/bootstrap")["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["src/devicefleet_bootstrap"]
