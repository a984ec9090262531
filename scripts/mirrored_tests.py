"""How many of owl's modules have a mirrored test file (owl/a/b.py ↔ tests/a/test_b.py).

Tests mirror the package (docs/architecture.md); this prints the count and the modules
without one, so that the gaps are easy to see: `python scripts/mirrored_tests.py`.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    modules = sorted(p for p in (ROOT / "owl").rglob("*.py") if p.name != "__init__.py")
    missing = [
        module
        for module in modules
        if not (
            ROOT / "tests" / module.relative_to(ROOT / "owl").parent / f"test_{module.name}"
        ).exists()
    ]
    for module in missing:
        print(f"no test file: {module.relative_to(ROOT)}")
    print(f"{len(modules) - len(missing)} of {len(modules)} modules have a mirrored test file")


if __name__ == "__main__":
    main()
