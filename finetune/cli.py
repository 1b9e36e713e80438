"""``reviewbot finetune ...``: harvest, train, merge and evaluate adapters."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` command group to the ``reviewbot`` parser."""
    p = sub.add_parser("finetune", help="build data, train, merge and evaluate LoRA adapters")
    group = p.add_subparsers(dest="finetune_command", required=True)
    del group  # each subcommand registers itself below
