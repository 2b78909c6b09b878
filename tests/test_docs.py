"""docs/architecture.md's module map names every module of the package, and only those;
the README and the demo's config agree on how long the demo takes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "losscmp"


def module_map() -> dict[str, str]:
    """The map's entries: 'cli.py' or 'data/' -> the entry's text (its continued lines too)."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = doc.split("```\nlosscmp/\n", 1)[1].split("```", 1)[0]
    entries = re.split(r"\n(?=  \S)", "\n" + block.rstrip())
    return {entry.split()[0]: entry for entry in entries if entry.strip()}


def test_the_module_map_names_every_module():
    entries = module_map()
    unnamed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            named = parts[0] in entries
        else:
            entry = entries.get(f"{parts[0]}/", "")
            named = parts[1] == "__init__.py" or re.search(rf"\b{re.escape(parts[1])}", entry)
        if not named:
            unnamed.append("/".join(parts))
    assert unnamed == []


def test_every_module_the_map_names_exists():
    for name in module_map():
        assert (PACKAGE / name).exists(), name


def test_the_readme_and_the_demo_config_give_one_demo_time():
    """configs/synthetic.yaml said about 50 seconds, the README about 45."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    config = (ROOT / "configs" / "synthetic.yaml").read_text(encoding="utf-8")
    (in_readme,) = re.findall(r"the whole command takes about (\d+) seconds", readme)
    (in_config,) = re.findall(r"About (\d+) seconds", config)
    assert in_readme == in_config
