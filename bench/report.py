"""What every benchmark does with its figures: write them as JSON (under bench/results/)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")


def write_figures(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as indented JSON to ``path`` (folders made); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("figures written to %s", out)
    return out
