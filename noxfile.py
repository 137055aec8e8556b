"""
Sessions: tests (both anyio backends, with coverage), demo, lint, mypy, docs, bench.

Run ``nox -l`` to list them.
"""

from __future__ import annotations

import pathlib

import nox


nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "mypy", "docs"]

ROOT = pathlib.Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHON = "3.11"


def _providers() -> list[str]:
    return [
        f"./{path.parent.relative_to(ROOT)}[emulator]"
        for path in sorted((ROOT / "providers").glob("*/pyproject.toml"))
    ]


def _install(session: nox.Session, *groups: str, extras: str = "") -> None:
    """
    Install tether and every first-party provider (with their emulators).
    """
    packages = [f".{extras}", *_providers()]
    deps = [
        dep
        for group in groups
        for dep in nox.project.dependency_groups(PYPROJECT, group)
    ]
    session.install(*packages, *deps)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """
    The test suite on asyncio and trio, with a coverage floor.
    """
    _install(session, "tests")
    session.run("coverage", "erase")
    # On every core (up to four): the suite's length is mostly waiting on
    # subprocesses, kernels and sockets.
    default = ["-q", "-n", "auto", "--maxprocesses", "4"]
    session.run("coverage", "run", "-m", "pytest", *(session.posargs or default))
    session.run("coverage", "combine", "--quiet", success_codes=[0, 1])
    session.run("coverage", "report", "--fail-under=90")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """
    The reliability suite's long form: many more lifecycles under chaos, in
    process and through the TCP proxy to emulator processes (lost answers,
    truncated lists, the key quoted back, a Retry-After past the shield, a
    failed read-only pre-step, a Redis store cut mid-operation, kill -9).
    """
    _install(session, "tests")
    session.run(
        "pytest",
        "tests/test_chaos.py",
        "tests/test_chaos_proxy.py",
        "-q",
        *session.posargs,
        env={"TETHER_SOAK_LIFECYCLES": "200"},
    )


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """
    The four emulated providers on their local emulators, and local running real
    code on this machine: sessions, pinging, a failover.
    """
    _install(session, extras="[emulator]")
    session.run("tether", "demo", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """
    ruff, for lint and format.
    """
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    paths = ["src", "tests", "providers", "benchmarks", "docs/examples", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=PYTHON)
def mypy(session: nox.Session) -> None:
    """
    mypy --strict on the library, every provider and the docs' examples.
    """
    _install(session, "typing")
    session.run("mypy")
    # Typing tests: files mypy checks and nobody runs (assert_type).
    session.run("mypy", "--strict", "tests/typing")
    # The documentation's examples, typed as users are shown to write them.
    session.run("mypy", "--strict", "docs/examples")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """
    Build the docs, with warnings as errors.
    """
    # The API reference imports tether.otel: OpenTelemetry's API is needed.
    _install(session, "docs", extras="[otel]")
    session.run(
        "sphinx-build",
        "-n",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """
    The benchmarks: ratios measured side by side in one run.
    """
    _install(session, "bench", extras="[fast,redis]")
    session.run("python", "-m", "benchmarks", *session.posargs)
