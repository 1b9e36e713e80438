"""The folder tree is the architecture: each layer imports only the layers below it.

Bottom to top (README, "Layout"):

    settings/  →  review/  →  jobs/  →  github/ | model/  →  runners/ | state/  →
    server/ | worker/ | setup/
    →  finetune/ | cli_setup  →  reviewbot.cli

The pure layers (settings, the review core, the job vocabulary, the GitHub edge's
events/markers/payload/conversation, the runners, setup's manifest) import no I/O library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import ROOT

#: Layer of each top-level part; a module may import its own layer and the ones below.
LAYERS: dict[str, int] = {
    "reviewbot.settings": 0,
    "reviewbot.review": 1,
    "reviewbot.templates": 1,
    "reviewbot.jobs": 2,
    "reviewbot.learning": 2,
    "reviewbot.github": 3,
    "reviewbot.model": 3,
    "reviewbot.runners": 4,
    "reviewbot.state": 4,
    "reviewbot.store": 4,
    "reviewbot.server": 5,
    "worker": 5,
    "reviewbot.doctor": 5,
    "reviewbot.cli_errors": 5,
    "reviewbot.logs": 5,
    "reviewbot.metrics": 5,
    "reviewbot.setup": 5,
    "finetune": 6,
    "reviewbot.cli_setup": 6,
    "reviewbot.cli_outcomes": 6,
    "reviewbot.cli_post": 6,
    "reviewbot.cli_model": 6,
    "reviewbot.cli": 7,
}
#: Same-level parts that must not know each other.
SIBLINGS = [
    ("reviewbot.github", "reviewbot.model"),
    ("reviewbot.runners", "reviewbot.state"),
    ("reviewbot.runners", "reviewbot.store"),
    ("reviewbot.store", "reviewbot.state"),
    ("reviewbot.server", "worker"),
    ("reviewbot.setup", "reviewbot.server"),
    ("reviewbot.setup", "worker"),
]
#: Libraries that do I/O (network, processes, models, frameworks).
IO_LIBRARIES = {
    "alembic",
    "celery",
    "flask",
    "github",
    "peft",
    "psycopg",
    "redis",
    "requests",
    "socket",
    "sqlalchemy",
    "subprocess",
    "torch",
    "transformers",
    "urllib3",
    "werkzeug",
}
#: Modules that must stay free of them.
PURE = [
    "reviewbot/settings",
    "reviewbot/review",
    "reviewbot/jobs",
    "reviewbot/learning",
    "reviewbot/runners",
    "reviewbot/github/events.py",
    "reviewbot/github/markers.py",
    "reviewbot/github/payload.py",
    "reviewbot/github/checks.py",
    "reviewbot/github/conversation.py",
    "reviewbot/github/data.py",
    "reviewbot/github/errors.py",
    "reviewbot/setup/manifest.py",
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _part(module: str) -> str | None:
    """The layered part ``module`` belongs to (the longest matching prefix)."""
    found = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return max(found, key=len) if found else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(
    p
    for folder in ("reviewbot", "worker", "finetune")
    for p in (ROOT / folder).rglob("*.py")
    if "templates" not in p.parts
)


def test_the_tree_holds_every_module_in_a_layer() -> None:
    assert len(SOURCES) > 40
    assert [_module(p) for p in SOURCES if _part(_module(p)) is None] == ["reviewbot"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_imports_only_its_own_layer_and_the_ones_below(path: Path) -> None:
    here = _part(_module(path))
    if here is None:
        return
    upward = []
    for line, name in _imports(path):
        there = _part(name)
        if there is None or there == here:
            continue
        if LAYERS[there] > LAYERS[here] or {here, there} in [set(s) for s in SIBLINGS]:
            upward.append(f"line {line}: {name} ({there}, layer {LAYERS[there]})")
    assert upward == [], f"{here} (layer {LAYERS[here]}) imports upward or sideways"


def _pure_sources() -> list[Path]:
    out = []
    for entry in PURE:
        target = ROOT / entry
        out += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return out


@pytest.mark.parametrize("path", _pure_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pure_layers_import_no_io_library(path: Path) -> None:
    io = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if name.split(".")[0] in IO_LIBRARIES
    ]
    assert io == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rules above would catch a review-core module importing the GitHub client."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from reviewbot.github.client import GitHubClient\n")
    imported = [name for _, name in _imports(bad)]
    assert imported == ["reviewbot.github.client"]
    assert LAYERS[_part(imported[0]) or ""] > LAYERS["reviewbot.review"]


def test_the_web_process_imports_neither_the_model_nor_the_worker() -> None:
    """The webhook server starts fast and small: no torch, no worker code."""
    import subprocess

    code = (
        "import sys; import reviewbot.server.app, reviewbot.server.queue; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'worker', "
        "'transformers') or m.startswith('reviewbot.model')); print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
