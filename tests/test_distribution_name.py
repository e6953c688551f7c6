"""The distribution is ``flowlab-nf`` (``flowlab`` on PyPI is an unrelated project): the plugin recipe of
docs/writing-plugins.md, the example and the test plugin depend on that name, and it resolves to this flowlab."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from flowlab.plugins import BUILTIN_DISTRIBUTION

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("examples/flowlab-planar/pyproject.toml", "tests/plugins/flowlab-tiny-plugin/pyproject.toml")


def project(text: str) -> dict:
    return tomllib.loads(text)["project"]


def flowlab_requirement(dependencies: list[str]) -> Requirement:
    """The one dependency that names flowlab's distribution."""
    found = [Requirement(d) for d in dependencies if canonicalize_name(Requirement(d).name).startswith("flowlab")]
    assert len(found) == 1, dependencies
    return found[0]


def test_the_distribution_name_is_the_free_one():
    name = project((ROOT / "pyproject.toml").read_text())["name"]
    assert name == BUILTIN_DISTRIBUTION == "flowlab-nf"


def test_the_documented_recipe_depends_on_the_distribution_name():
    doc = (ROOT / "docs" / "writing-plugins.md").read_text()
    recipe = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert recipe, "docs/writing-plugins.md has no pyproject.toml block"
    requirement = flowlab_requirement(project(recipe.group(1))["dependencies"])
    assert canonicalize_name(requirement.name) == canonicalize_name(BUILTIN_DISTRIBUTION)
    assert metadata.version(BUILTIN_DISTRIBUTION) in requirement.specifier
    assert f"distribution is **`{BUILTIN_DISTRIBUTION}`**" in doc  # named, never installed from an index


@pytest.mark.parametrize("path", PLUGINS)
def test_the_example_and_test_plugins_depend_on_it(path):
    requirement = flowlab_requirement(project((ROOT / path).read_text())["dependencies"])
    assert canonicalize_name(requirement.name) == canonicalize_name(BUILTIN_DISTRIBUTION)


@pytest.mark.parametrize("plugin", ["flowlab-planar", "flowlab-tiny-plugin"])
def test_installed_plugins_requirements_resolve_to_this_flowlab(plugin):
    """What ``pip check`` verifies: the installed plugin's requirement is met by the installed flowlab."""
    try:
        requires = metadata.requires(plugin) or []
    except metadata.PackageNotFoundError:
        pytest.skip(f"{plugin} is not installed (the README's test command installs it)")
    requirement = flowlab_requirement(requires)
    assert requirement.specifier.contains(metadata.version(requirement.name), prereleases=True)
