"""The container image (Dockerfile) and the cluster of compose.yaml.

The Dockerfile's steps are run here as written, in a fresh virtualenv (its
``/opt/hubbub``) and a copy of the build context, and the image's command is
started with the image's environment: what a container of it does, without
needing a container engine. With podman and a base image at hand, the slow
test also builds the image itself (``make test-slow``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UNIT, free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
SECRET = "container-test-secret-0123456789abcdef"


@dataclass
class Stage:
    base: str
    run: list[str] = field(default_factory=list)
    copy: list[list[str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    other: dict[str, str] = field(default_factory=dict)  # USER, CMD, HEALTHCHECK, ...


def dockerfile() -> list[Stage]:
    """The Dockerfile's stages: instructions joined across ``\\`` lines, comments out."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[Stage] = []
    args: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            stages.append(Stage(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)))
        elif word == "RUN":
            stages[-1].run.append(rest)
        elif word == "COPY":
            stages[-1].copy.append(rest.split())
        elif word == "ENV":
            stages[-1].env.update(dict(pair.split("=", 1) for pair in shlex.split(rest)))
        else:
            stages[-1].other[word] = rest
    return stages


def exec_form(value: str) -> list[str]:
    import json

    found: list[str] = json.loads(value[value.index("["):])
    return found


def test_the_image_is_multi_stage_non_root_and_checked() -> None:
    """Two stages (the second without the build), a non-root user, a health check on
    /healthz, ``hubbub serve`` on every address, its secret from a file."""
    build, final = dockerfile()
    assert build.base == f"{final.base} AS build"
    assert "pip install" not in " ".join(final.run)
    assert ["--from=build", "/opt/hubbub", "/opt/hubbub"] in final.copy
    assert final.other["USER"] not in ("root", "0")
    assert "/healthz" in final.other["HEALTHCHECK"]
    assert exec_form(final.other["CMD"]) == ["hubbub", "serve"]
    assert final.env["HUBBUB_HOST"] == "0.0.0.0"
    assert final.env["HUBBUB_AUTH__SECRET_FILE"].startswith("/run/secrets/")


def run_build_stage(context: Path, venv: Path) -> None:
    """The build stage's steps, as written, with ``/opt/hubbub`` at ``venv``."""
    build, _ = dockerfile()
    for args in build.copy:
        *sources, _ = args
        for source in sources:
            target = context / source
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / source, target)
    for step in build.run:
        out = subprocess.run(step.replace("/opt/hubbub", str(venv)), shell=True, cwd=context,
                             capture_output=True, text=True, timeout=600 * UNIT)
        assert out.returncode == 0, f"RUN {step}\n{out.stdout}\n{out.stderr}"


@pytest.mark.timeout(900 * UNIT)
def test_the_images_steps_and_command(tmp_path: Path) -> None:
    """The Dockerfile's build steps make a working hub; its command, with its
    environment, refuses to start without the secret, and with it serves on every
    address, passes its own health check, and requires a token."""
    context, venv, data = tmp_path / "src", tmp_path / "opt-hubbub", tmp_path / "data"
    context.mkdir()
    data.mkdir()
    run_build_stage(context, venv)
    _, final = dockerfile()
    port = free_port("0.0.0.0")
    secret = tmp_path / "hubbub_secret"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")},
        **final.env,
        "PATH": final.env["PATH"].replace("/opt/hubbub", str(venv)).replace(
            "$PATH", os.environ["PATH"]),
        "HUBBUB_PORT": str(port),
        "HUBBUB_STORE": f"sqlite:///{data / 'hub.db'}",
        "HUBBUB_AUTH__SECRET_FILE": str(secret),
    }
    command = exec_form(final.other["CMD"])
    missing = subprocess.run(command, env=env, cwd=data, capture_output=True, text=True,
                             timeout=60 * UNIT)
    assert missing.returncode == 2 and "auth.secret_file" in missing.stderr

    secret.write_text(SECRET + "\n")
    proc = subprocess.Popen(command, env=env, cwd=data, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, 30 * UNIT)
        check = exec_form(final.other["HEALTHCHECK"].split(" CMD ", 1)[1])
        assert subprocess.run(check, env=env, timeout=30 * UNIT).returncode == 0
        assert httpx.post(f"{url}/v1/topics/c.a", json=1).status_code == 401
        token = subprocess.run(
            ["hubbub", "token", "--secret-file", str(secret), "--pub", "c.>"], env=env,
            capture_output=True, text=True, timeout=60 * UNIT).stdout.strip()
        r = httpx.post(f"{url}/v1/topics/c.a", json=1,
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
    finally:
        proc.terminate()
        assert proc.wait(30 * UNIT) == 0


def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_runs_three_hubs_on_redis_behind_nginx() -> None:
    """compose.yaml: Redis, three hubs of this image on it with the secret, and nginx
    with deploy/nginx.conf in front of them."""
    services = compose()["services"]
    assert set(services) == {"redis", "hub-1", "hub-2", "hub-3", "proxy"}
    for name in ("hub-1", "hub-2", "hub-3"):
        hub = services[name]
        assert hub["build"] == "."
        assert hub["environment"]["HUBBUB_STORE"] == "redis://redis:6379/0"
        _, final = dockerfile()
        assert hub["environment"]["HUBBUB_AUTH__SECRET_FILE"] == (
            final.env["HUBBUB_AUTH__SECRET_FILE"])
        assert hub["secrets"] == ["hubbub_secret"]
        assert hub["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "--appendfsync" in services["redis"]["command"]
    assert services["proxy"]["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in (
        services["proxy"]["volumes"])


def test_the_compose_proxy_is_the_documented_block() -> None:
    """deploy/nginx.conf is docs/cluster.md's tested block with the compose hubs as
    its upstream, and nothing else changed."""
    from tests.test_proxy import documented_block

    block = documented_block()
    for n in (1, 2, 3):
        block = block.replace(f"server 127.0.0.1:808{n} ", f"server hub-{n}:8080 ")
    lines = (ROOT / "deploy" / "nginx.conf").read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("#"):  # the file's own heading
        lines.pop(0)
    assert "".join(lines) == block


PODMAN = shutil.which("podman")


@pytest.mark.slow
@pytest.mark.timeout(1800 * UNIT)
def test_podman_builds_the_image(tmp_path: Path) -> None:
    """The image builds (podman, chroot isolation: no container runtime needed) and
    says what it runs, as whom, and how it is checked. The base image comes from
    HUBBUB_TEST_PYTHON_IMAGE or the Dockerfile's default, if podman has it."""
    if PODMAN is None:
        pytest.skip("podman is not installed")
    base = os.environ.get("HUBBUB_TEST_PYTHON_IMAGE") or dockerfile()[1].base
    if subprocess.run([PODMAN, "image", "exists", base], timeout=60).returncode != 0:
        pytest.skip(f"podman has no image {base} (set HUBBUB_TEST_PYTHON_IMAGE)")
    tag = f"localhost/hubbub-test:{os.getpid()}"
    out = subprocess.run(
        [PODMAN, "build", "--isolation", "chroot", "--format", "docker", "--build-arg",
         f"PYTHON_IMAGE={base}", "-t", tag, str(ROOT)],
        capture_output=True, text=True, timeout=1500 * UNIT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    try:
        inspect = subprocess.run(
            [PODMAN, "image", "inspect", "--format",
             "{{.Config.User}}|{{json .Config.Cmd}}|{{json .Config.Healthcheck.Test}}", tag],
            capture_output=True, text=True, timeout=60)
        user, cmd, check = inspect.stdout.strip().split("|")
        assert user == "hubbub" and cmd == '["hubbub","serve"]' and "/healthz" in check
    finally:
        subprocess.run([PODMAN, "rmi", "-f", tag], capture_output=True, timeout=120)
