"""Shared fixtures: tiny random-weight models built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinymodel import CHAT_TEMPLATE, build_tiny_adapter, build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama + locally trained tokenizer (no chat template) in a temp dir."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model (same weights), its tokenizer carrying a chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat-model"), CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A seeded LoRA adapter on ``tiny_model_dir`` (non-zero B) with reviewbot.json."""
    return build_tiny_adapter(tmp_path_factory.mktemp("tiny-adapter"), tiny_model_dir)
