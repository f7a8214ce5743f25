"""Prompt catalogs as an operator's older copy may be: the shipped ones, less some prompts."""

from __future__ import annotations

import shutil
from pathlib import Path

from ivr.settings import PROJECT_ROOT


def catalogs_without(folder: Path, *keys: str) -> Path:
    """The shipped prompt catalogs copied into `folder`, without `keys` (and the lines that
    continue them)."""
    shutil.copytree(PROJECT_ROOT / "prompts", folder)
    for catalog in folder.glob("*.yaml"):
        kept: list[str] = []
        dropping = False
        for line in catalog.read_text(encoding="utf-8").splitlines():
            indent = len(line) - len(line.lstrip())
            if dropping and line.strip() and indent > 2:
                continue
            dropping = any(line.startswith(f"  {key}:") for key in keys)
            if not dropping:
                kept.append(line)
        catalog.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return folder
