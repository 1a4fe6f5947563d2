"""The package list in pyproject.toml is explicit (the repository's folders map onto one namespace),
so a new package folder that is not listed would import in an editable install and be missing from
a wheel. These tests keep the list and the tree in step."""

from __future__ import annotations

import tomllib
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, object]:
    data = tomllib.loads((TOP / "pyproject.toml").read_text())
    tool: dict[str, object] = data["tool"]["setuptools"]
    return tool


def _folder(package: str, package_dir: dict[str, str]) -> Path:
    best = max((k for k in package_dir if package == k or package.startswith(k + ".")), key=len)
    rest = package[len(best) :].lstrip(".")
    return TOP / package_dir[best] / Path(*rest.split(".")) if rest else TOP / package_dir[best]


def test_every_python_package_folder_is_listed() -> None:
    tool = _setuptools()
    package_dir: dict[str, str] = tool["package-dir"]  # type: ignore[assignment]
    listed = set(tool["packages"])  # type: ignore[call-overload]
    on_disk: set[str] = set()
    for name, root in package_dir.items():
        for init in (TOP / root).rglob("__init__.py"):
            rel = init.parent.relative_to(TOP / root)
            on_disk.add(".".join([name, *rel.parts]))
    assert on_disk - listed == set(), "package folders missing from pyproject's packages"
    for package in listed:
        assert _folder(package, package_dir).is_dir(), package


def test_data_folders_ship_as_listed_data_packages() -> None:
    tool = _setuptools()
    package_dir: dict[str, str] = tool["package-dir"]  # type: ignore[assignment]
    data: dict[str, list[str]] = tool["package-data"]  # type: ignore[assignment]
    for package in ("isobench.images.agent", "isobench.drivers.container.helper"):
        folder = _folder(package, package_dir)
        assert not (folder / "__init__.py").exists()
        shipped = {p.name for pattern in data[package] for p in folder.glob(pattern)}
        assert shipped and shipped == {p.name for p in folder.iterdir() if p.is_file()}, package


def test_the_helper_module_is_not_shadowed_by_its_source_folder() -> None:
    from isobench.drivers.container import helper

    assert helper.__file__ is not None and helper.__file__.endswith("helper.py")
    assert helper.SOURCE.is_file()
