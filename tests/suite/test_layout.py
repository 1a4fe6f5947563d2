"""The house's measures that a change can break without a test failing elsewhere (issue #20)."""

from __future__ import annotations

from pathlib import Path

#: No source module longer than this: past it a module has usually become two.
MAX_MODULE_LINES = 550

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("suite", "drivers", "reports", "vm-images")


def test_no_module_is_longer_than_the_house_allows() -> None:
    modules = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    assert len(modules) > 100  # the tree was found
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"
