"""Fine-tuning demo: does a short LoRA run on review comments lower held-out loss?

Splits a review-comment JSONL file (default: the crc-py dev set in tests/data) with a fixed
seed into held-out and training examples, measures the held-out loss of the base
model (teacher-forced, response tokens only: :func:`finetune.loss.heldout_loss`),
trains a LoRA adapter with :func:`finetune.train.train`, loads the adapter the way
the workers do (:func:`reviewbot.model.serving.load_engine`), measures the held-out loss
again, prints a table and writes JSON (training tokens/s and peak memory included).

    .venv/bin/python bench/finetune_demo.py

The split is written next to the adapter (``heldout.jsonl``, ``train.jsonl``) so
the quality harness can score the adapter on examples it did not train on::

    .venv/bin/reviewbot finetune eval --model smollm2 \
        --adapter bench/results/finetune_demo \
        --data bench/results/finetune_demo/heldout.jsonl
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

from report import write_figures

from finetune.examples import Example, dedupe, write_examples
from finetune.loss import heldout_loss
from finetune.sources import SourceError, load_examples
from finetune.train import TrainError, train
from reviewbot.model.adapters import make_renderer
from reviewbot.model.loading import ModelLoadError, load_model
from reviewbot.model.serving import load_engine
from reviewbot.settings.defaults import DEMO_MODEL, QUANTIZE_CHOICES, TrainSettings

log = logging.getLogger("finetune_demo")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "review-comments.dev.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainSettings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--model", default=DEMO_MODEL)
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto")
    p.add_argument("--heldout", type=int, default=32, help="held-out examples")
    p.add_argument("--train-size", type=int, default=120, help="training examples (at most)")
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    # 5× the seed recipe's 2e-4: the drop shows within a CPU-sized budget of 30 steps
    p.add_argument("--lr", type=float, default=5 * d.learning_rate)
    p.add_argument("--rank", type=int, default=d.lora_r)
    p.add_argument("--max-length", type=int, default=192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "finetune_demo")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune_demo.json")
    return p.parse_args(argv)


def split(args: argparse.Namespace) -> tuple[list[Example], list[Example]]:
    """(held-out, training) examples: a seeded shuffle, written to ``args.work``."""
    examples = dedupe(load_examples(args.data))
    order = list(range(len(examples)))
    random.Random(args.seed).shuffle(order)
    if len(order) <= args.heldout:
        raise TrainError(f"{args.data} has {len(order)} examples; need more than --heldout")
    heldout = [examples[i] for i in order[: args.heldout]]
    training = [examples[i] for i in order[args.heldout : args.heldout + args.train_size]]
    return heldout, training


def run(args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    heldout, training = split(args)
    started = time.perf_counter()

    base = load_model(args.model, args.quantize, "cpu")
    renderer = make_renderer("alpaca", base.tokenizer)
    score = dict(renderer=renderer, examples=heldout, max_length=args.max_length, batch_size=4)
    t0 = time.perf_counter()
    base_loss = heldout_loss(base.model, base.tokenizer, **score)
    eval_seconds = time.perf_counter() - t0
    quantized = base.quantized
    del base

    options = TrainSettings(
        lora_r=args.rank,
        learning_rate=args.lr,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        seed=args.seed,
        quantize=args.quantize,
        eval_fraction=0.0,
        logging_steps=10,
    )
    result = train(
        args.model,
        training,
        args.work,
        options,
        overwrite=True,
        device="cpu",
        sources=[str(args.data)],
    )
    write_examples(heldout, args.work / "heldout.jsonl")
    write_examples(training, args.work / "train.jsonl")
    served = load_engine(args.model, adapter=str(args.work), quantize=args.quantize, device="cpu")
    adapter_loss = heldout_loss(served.model, served.tokenizer, **score)
    return {
        "command": " ".join(sys.argv),
        "model": args.model,
        "quantized": quantized,
        "data": str(args.data),
        "seed": args.seed,
        "heldout_examples": len(heldout),
        "train_examples": len(training),
        "max_length": args.max_length,
        "steps": result.steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "learning_rate": args.lr,
        "lora_r": args.rank,
        "torch_threads": torch.get_num_threads(),
        "base_heldout_loss": round(base_loss, 4),
        "adapter_heldout_loss": round(adapter_loss, 4),
        "heldout_loss_change": round(adapter_loss - base_loss, 4),
        "train_loss": round(result.metrics["train_loss"], 4),
        "train_seconds": result.metrics["train_seconds"],
        "train_tokens": result.metrics["train_tokens"],
        "train_tokens_per_second": result.metrics["tokens_per_second"],
        "peak_memory_mb": round(result.metrics["peak_memory_bytes"] / 2**20, 1),
        "peak_memory_kind": result.metrics["peak_memory_kind"],
        "heldout_eval_seconds": round(eval_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "adapter_dir": str(args.work),
    }


def table(r: dict) -> str:
    rows = [
        ("held-out loss, base", f"{r['base_heldout_loss']:.4f}"),
        ("held-out loss, base + adapter", f"{r['adapter_heldout_loss']:.4f}"),
        ("change", f"{r['heldout_loss_change']:+.4f}"),
        ("training steps × batch", f"{r['steps']} × {r['batch_size'] * r['grad_accum']}"),
        ("training tokens/s", f"{r['train_tokens_per_second']:.1f}"),
        ("training time (s)", f"{r['train_seconds']:.1f}"),
        (f"peak memory ({r['peak_memory_kind']}, MB)", f"{r['peak_memory_mb']:.0f}"),
        ("total time (s)", f"{r['total_seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:>10}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        result = run(args)
    except (SourceError, TrainError, ModelLoadError) as e:
        print(f"finetune_demo: error: {e}", file=sys.stderr)
        return 2
    write_figures(result, args.out)
    print(table(result))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
