"""Shared test settings and fixtures: data paths, Redis databases, tiny models.

Everything the tests read lies in ``tests/data`` (with the upstream LICENSE files).
The tests use the Redis databases below, and flush only those; set
``REVIEWBOT_TEST_REDIS_DBS`` (three comma-separated numbers: Celery broker of the
webhook tests, broker of the end-to-end tests, dedupe keys) to use others, and
``REVIEWBOT_TEST_REDIS`` for another server. The bench/ scripts use other numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tinymodel import CHAT_TEMPLATE, build_tiny_adapter, build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
WEBHOOKS = DATA / "webhooks"

REDIS = os.environ.get("REVIEWBOT_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
_DBS = [int(n) for n in os.environ.get("REVIEWBOT_TEST_REDIS_DBS", "11,13,15").split(",")]
if len(_DBS) != 3 or len(set(_DBS)) != 3:
    raise ValueError("REVIEWBOT_TEST_REDIS_DBS must name three different Redis databases")
#: The Celery broker of the webhook tests (flushed before and after each test using it).
WEB_BROKER_DB = _DBS[0]
#: The Celery broker and result backend of the end-to-end tests (flushed likewise).
E2E_BROKER_DB = _DBS[1]
#: Dedupe keys of the webhook tests: each test uses its own key prefix and deletes its keys.
DEDUPE_DB = _DBS[2]


def redis_url(db: int) -> str:
    """The URL of test database ``db``."""
    return f"{REDIS}/{db}"


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
