"""
Finding providers: registration by code, entry points, clashes, broken plugins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import tether
from tether.exceptions import (
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderValidationError,
)
from tether.testing import FakeProvider


def test_register_and_load():
    """
    A provider registered by code loads as itself.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    assert FakeProvider is registry.load("fake")
    assert ["fake"] == registry.names()


def test_register_twice_needs_replace():
    """
    A second registration of one name raises unless replace=True.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    with pytest.raises(ValueError, match="replace=True"):
        registry.register("fake", FakeProvider)
    registry.register("fake", FakeProvider, replace=True)


@pytest.mark.parametrize("obj", [object, 42, str])
def test_register_refuses_non_providers(obj):
    """
    Only Provider subclasses can be registered.
    """
    registry = tether.ProviderRegistry(entry_points=False)

    with pytest.raises(ProviderValidationError) as info:
        registry.register("x", obj)

    assert obj is info.value.obj


def test_api_version_is_checked():
    """
    A provider written for another plugin API version is refused at load.
    """

    class Future(FakeProvider):
        api_version = 99

    registry = tether.ProviderRegistry(entry_points=False)
    with pytest.raises(ProviderValidationError, match="version 99"):
        registry.register("future", Future)


def test_not_found_lists_known():
    """
    An unknown name raises ProviderNotFoundError naming what is known.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    with pytest.raises(ProviderNotFoundError, match="fake") as info:
        registry.load("nope")

    assert ("fake",) == info.value.available


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="tether.providers")


def test_entry_points_listed_without_import():
    """
    Listing entry points imports nothing: a broken one shows no error until loaded.
    """
    registry = tether.ProviderRegistry(
        group_entries=[_ep("broken", "no_such_module_xyz:Provider")]
    )

    assert ["broken"] == registry.names()
    assert registry.info()[0].error is None
    assert "no_such_module_xyz" not in sys.modules


def test_broken_plugin_raises_only_when_asked():
    """
    A plugin that fails to import raises ProviderLoadError with its cause, only for itself.
    """
    registry = tether.ProviderRegistry(
        group_entries=[
            _ep("broken", "no_such_module_xyz:Provider"),
            _ep("fake", "tether.testing:FakeProvider"),
        ]
    )

    assert FakeProvider is registry.load("fake")
    with pytest.raises(ProviderLoadError) as info:
        registry.load("broken")

    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert "no_such_module_xyz:Provider" == info.value.entry_point
    assert "broken" == info.value.name
    assert registry.info()[0].error is not None
    # The error is remembered, not retried on every call.
    with pytest.raises(ProviderLoadError):
        registry.load("broken")


def test_entry_point_of_wrong_kind():
    """
    An entry point that loads something that is not a provider raises ProviderValidationError.
    """
    registry = tether.ProviderRegistry(group_entries=[_ep("bad", "tether:Session")])

    with pytest.raises(ProviderValidationError) as info:
        registry.load("bad")

    assert tether.Session is info.value.obj


def test_registration_wins_over_entry_points():
    """
    A name registered by code shadows an installed entry point.
    """
    registry = tether.ProviderRegistry(
        group_entries=[_ep("fake", "no_such_module_xyz:P")]
    )
    registry.register("fake", FakeProvider)

    assert FakeProvider is registry.load("fake")


# -- real distributions, built and installed by the test ------------------------------

PLUGIN = """
from tether.testing import FakeProvider


class {cls}(FakeProvider):
    pass
"""


def _make_dist(root: Path, dist: str, module: str, name: str, body: str) -> Path:
    project = root / dist
    (project / "src" / module).mkdir(parents=True)
    (project / "src" / module / "__init__.py").write_text(body)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "{dist}"
            version = "1.2.3"

            [tool.hatch.build.targets.wheel]
            packages = ["src/{module}"]

            [project.entry-points."tether.providers"]
            {name} = "{module}:Plugin"
            """
        )
    )
    return project


def _installer() -> list[str]:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if Path(uv).exists():
        return [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            sys.executable,
            "--no-deps",
        ]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
    ]  # pragma: no cover


@pytest.fixture(name="site", scope="module")
def _site(tmp_path_factory):
    """
    Build and install three real plugin distributions into a private directory:
    a good one, a second one claiming the same name, and a broken one.
    """
    root = tmp_path_factory.mktemp("plugins")
    target = root / "site"
    projects = [
        _make_dist(
            root, "tether-good", "tether_good", "good", PLUGIN.format(cls="Plugin")
        ),
        _make_dist(
            root, "tether-twin-a", "tether_twin_a", "twin", PLUGIN.format(cls="Plugin")
        ),
        _make_dist(
            root, "tether-twin-b", "tether_twin_b", "twin", PLUGIN.format(cls="Plugin")
        ),
        _make_dist(
            root,
            "tether-broken",
            "tether_broken",
            "broken",
            "raise ImportError('kaput')\n",
        ),
    ]
    subprocess.run(
        [*_installer(), "--target", str(target), *map(str, projects)],
        check=True,
        timeout=300,
    )
    return target


PROBE = """
import json, sys
import tether
from tether.exceptions import ProviderLoadError

registry = tether.ProviderRegistry()
out = {"names": registry.names(), "info": {}}
for info in registry.info():
    out["info"][info.name] = [info.distribution, info.version, info.error]
out["good"] = registry.load("good").__module__
for name in ("twin", "broken"):
    try:
        registry.load(name)
    except ProviderLoadError as exc:
        out[name] = [type(exc).__name__, str(exc), list(exc.distributions)]
print(json.dumps(out))
"""


def test_installed_distributions_are_discovered(site):
    """
    Real installed plugins are found through the entry-point group; a clash names
    both distributions; a broken plugin fails alone, naming its distribution.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert {"good", "twin", "broken"} <= set(out["names"])
    assert ["tether-good", "1.2.3", None] == out["info"]["good"]
    assert "tether_good" == out["good"]
    kind, message, dists = out["twin"]
    assert "ProviderLoadError" == kind
    assert {"tether-twin-a", "tether-twin-b"} == set(dists)
    assert "tether-twin-a" in message and "tether-twin-b" in message
    kind, message, dists = out["broken"]
    assert ["tether-broken"] == dists
    assert "kaput" in message
