"""``reviewbot model serve``: one model process per GPU for any number of workers.

It runs ``transformers serve`` (Hugging Face's OpenAI-compatible server,
``pip install 'reviewbot[serve]'``) on the configured model, pinned to it, with
continuous batching, and in 4-bit NF4 (bitsandbytes) where the quantisation policy
asks for it on CUDA; workers then set ``REVIEWBOT_INFERENCE_URL`` (and
``REVIEWBOT_MODEL``, for the tokenizer) instead of loading the model themselves.
The README gives the equivalent commands for vLLM, TGI, llama.cpp and Ollama.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from reviewbot.cli_errors import EXIT_USAGE, CliError
from reviewbot.settings.defaults import (
    DEFAULT_QUANTIZE,
    DEMO_MODEL,
    INFERENCE_SERVE_PORT,
    QUANTIZE_CHOICES,
)

log = logging.getLogger(__name__)

#: The KV cache's share of free memory on CPU (transformers takes 0.6 of the RAM).
CPU_KV_CACHE_MEMORY = 0.05


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``model serve`` to the CLI."""
    p = sub.add_parser("model", help="serve the model to workers over HTTP")
    actions = p.add_subparsers(dest="action", required=True)
    s = actions.add_parser(
        "serve",
        help="run an OpenAI-compatible server (transformers serve) for REVIEWBOT_INFERENCE_URL",
        description="Serve the model with `transformers serve` (continuous batching; 4-bit NF4"
        " on CUDA by the --quantize policy): any number of workers, on any hosts, share it by"
        " setting REVIEWBOT_INFERENCE_URL=http://HOST:PORT/v1. Needs `pip install"
        " 'reviewbot[serve]'`.",
    )
    s.add_argument(
        "--model",
        default=None,
        help=f"HF id or local dir (default: REVIEWBOT_MODEL, else {DEMO_MODEL})",
    )
    s.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=INFERENCE_SERVE_PORT)
    s.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=DEFAULT_QUANTIZE)
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    s.add_argument(
        "--no-continuous-batching",
        action="store_true",
        help="one request at a time (continuous batching is on by default)",
    )
    s.add_argument(
        "--kv-cache-memory",
        type=float,
        default=None,
        metavar="FRACTION",
        help="share of the device's free memory the continuous-batching KV cache takes "
        f"(default: {CPU_KV_CACHE_MEMORY} on CPU, where it is the machine's RAM; "
        "transformers' own on CUDA)",
    )
    s.add_argument(
        "--print-command",
        action="store_true",
        help="print the transformers serve command line and exit",
    )
    s.add_argument(
        "extra",
        nargs=argparse.REMAINDER,
        help="after --: more `transformers serve` options (e.g. -- --cb-num-blocks 512)",
    )
    s.set_defaults(func=cmd_model_serve)


def serve_argv(
    path: str,
    host: str,
    port: int,
    device: str,
    four_bit: bool,
    batching: bool,
    kv_cache_memory: float | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``transformers serve`` command line for model directory/hub id ``path``."""
    argv = [sys.executable, "-m", "transformers.cli.transformers", "serve", path]
    argv += ["--host", host, "--port", str(port), "--device", device]
    if batching:
        argv.append("--continuous-batching")
        if kv_cache_memory is not None:
            argv += ["--cb-max-memory-percent", f"{kv_cache_memory:g}"]
    if four_bit:
        argv += ["--quantization", "bnb-4bit"]
    return argv + [a for a in extra if a != "--"]


def cmd_model_serve(args: argparse.Namespace) -> int:
    from reviewbot.model.loading import (
        ModelLoadError,
        load_config,
        resolve_device,
        resolve_model,
    )
    from reviewbot.model.quantization import wants_4bit

    if not 0 < args.port < 65536:
        raise CliError(f"--port must be a port number, not {args.port}", EXIT_USAGE)
    if args.kv_cache_memory is not None and not 0 < args.kv_cache_memory <= 1:
        raise CliError("--kv-cache-memory must be a fraction in (0, 1]", EXIT_USAGE)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise CliError(
            f"`reviewbot model serve` needs {e.name}: pip install 'reviewbot[serve]'"
        ) from None
    model = args.model or os.environ.get("REVIEWBOT_MODEL") or None
    try:
        path = resolve_model(model)
        device = resolve_device(args.device)
        four_bit = device.type == "cuda" and wants_4bit(args.quantize, device, load_config(path))
    except (ModelLoadError, ValueError, RuntimeError) as e:
        raise CliError(f"cannot serve the model: {e}") from None
    if args.quantize == "4bit" and device.type != "cuda":
        log.warning("transformers serve quantizes on CUDA only: serving in full precision")
    kv = args.kv_cache_memory
    if kv is None and device.type == "cpu":
        kv = CPU_KV_CACHE_MEMORY
    argv = serve_argv(
        path,
        args.host,
        args.port,
        str(device),
        four_bit,
        not args.no_continuous_batching,
        kv,
        args.extra,
    )
    if args.print_command:
        print(shlex.join(argv))
        return 0
    url = f"http://{args.host}:{args.port}/v1"
    log.info("serving %s at %s: %s", model or DEMO_MODEL, url, shlex.join(argv))
    log.info(
        "workers: REVIEWBOT_INFERENCE_URL=%s REVIEWBOT_INFERENCE_MODEL=%s REVIEWBOT_MODEL=%s",
        url,
        path,
        model or DEMO_MODEL,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # the server becomes this process: signals reach it directly
    return 0  # pragma: no cover
