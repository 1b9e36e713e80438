"""Generation throughput: batched vs one prompt at a time, on the same loaded model.

    python bench/generation.py [--model smollm2|tiny|DIR] [--hunks 8] [--max-new-tokens 48]
                               [--quantize auto|4bit|none] [--devices auto|cpu|cuda|cpu,cuda]
                               [--json OUT]

Critique prompts are rendered from the hunks of a built-in diff (or ``--diff FILE``)
through the review planner when it is present. On each device (``auto``: the CPU,
and CUDA too when ``torch.cuda.is_available()``), in a fresh child process so that
peak memory is that device's alone, the same loaded model generates the critiques
batched and one prompt at a time. Prints tokens/s of both modes and their ratio;
the time to first comment, i.e. the seconds from the ``generate`` call until the
first critique is complete (batched: the first batch, ``--batch-size`` prompts,
longest first; one at a time: the first hunk), and its ratio; the peak memory
(process peak RSS from ``getrusage`` after loading and after generating, and on
CUDA ``torch.cuda.max_memory_allocated``); the model's footprint in 4-bit NF4 vs
bf16; and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from report import write_figures

from reviewbot.model.generation import Engine
from reviewbot.model.serving import load_engine
from reviewbot.model.tokens import GenerationStats
from reviewbot.settings.defaults import DEMO_MODEL, QUANTIZE_CHOICES, GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "results" / "generation.json"
log = logging.getLogger("bench.generation")

# A small module before and after a change with eight separate edits: difflib turns
# it into a valid unified diff of eight hunks of different lengths.
_BEFORE = '''"""Inventory of items in a warehouse."""

import json
import os


class Inventory:
    def __init__(self, path):
        self.path = path
        self.items = {}

    def load(self):
        f = open(self.path)
        self.items = json.load(f)
        return self.items

    def save(self):
        with open(self.path, "w") as f:
            json.dump(self.items, f)

    def add(self, name, count):
        self.items[name] = self.items.get(name, 0) + count

    def remove(self, name, count):
        self.items[name] = self.items[name] - count

    def count(self, name):
        return self.items.get(name, 0)

    def __len__(self):
        return len(self.items)

    def total(self):
        total = 0
        for name in self.items:
            total += self.items[name]
        return total


def is_empty(inventory):
    return not inventory.items


def parse_line(line):
    name, count = line.split(",")
    return name, int(count)


def format_line(name, count):
    return f"{name},{count}"


def read_orders(path):
    orders = []
    for line in open(path):
        orders.append(parse_line(line))
    return orders


def apply_orders(inventory, orders):
    for name, count in orders:
        inventory.remove(name, count)


def report(inventory):
    lines = []
    for name, count in inventory.items.items():
        lines.append(name + ": " + str(count))
    return "\\n".join(lines)


def names(inventory):
    return sorted(inventory.items)


def find_low(inventory, limit):
    low = []
    for name, count in inventory.items.items():
        if count < limit:
            low.append(name)
    return low


def price(inventory, prices):
    value = 0
    for name, count in inventory.items.items():
        value += prices[name] * count
    return value


def main():
    inventory = Inventory(os.environ["INVENTORY"])
    inventory.load()
    apply_orders(inventory, read_orders(sys.argv[1]))
    inventory.save()
    print(report(inventory))
'''

_EDITS = [
    (
        "        f = open(self.path)\n        self.items = json.load(f)\n",
        "        f = open(self.path)\n        data = f.read()\n"
        "        self.items = json.loads(data)\n",
    ),
    (
        "        self.items[name] = self.items[name] - count\n",
        "        if name not in self.items:\n            return\n"
        "        self.items[name] = self.items[name] - count\n",
    ),
    (
        "        total = 0\n        for name in self.items:\n"
        "            total += self.items[name]\n",
        "        total = 0\n        for name in self.items.keys():\n"
        "            total = total + self.items[name]\n",
    ),
    (
        '    name, count = line.split(",")\n',
        '    name, count = line.strip().split(",")\n    name = name.lower()\n',
    ),
    ("    for line in open(path):\n", "    for line in open(path).readlines():\n"),
    (
        '        lines.append(name + ": " + str(count))\n',
        '        lines.append("%s: %d" % (name, count))\n',
    ),
    ("        if count < limit:\n", "        if count <= limit or count == None:\n"),
    (
        "        value += prices[name] * count\n",
        "        try:\n            value += prices[name] * count\n"
        "        except:\n            pass\n",
    ),
]


def builtin_diff() -> str:
    """A unified diff with eight hunks (``inventory.py`` before/after the edits)."""
    after = _BEFORE
    for old, new in _EDITS:
        if old not in after:
            raise ValueError(f"edit does not apply: {old!r}")
        after = after.replace(old, new, 1)
    lines = difflib.unified_diff(
        _BEFORE.splitlines(keepends=True),
        after.splitlines(keepends=True),
        "a/inventory.py",
        "b/inventory.py",
        n=3,
    )
    return "".join(lines)


def split_hunks(diff: str) -> list[str]:
    """The new side (context + added lines, no markers) of every hunk of ``diff``."""
    hunks: list[list[str]] = []
    for line in diff.splitlines():
        if line.startswith("@@"):
            hunks.append([])
        elif hunks and line[:1] in (" ", "+") and not line.startswith("+++"):
            hunks[-1].append(line[1:])
    return ["\n".join(h) for h in hunks if h]


def hunks_of(diff: str) -> tuple[list[str], str]:
    """Hunk texts through the review planner if present, else the plain splitter."""
    try:
        from reviewbot.review.diffplan import plan_diff
    except ImportError:
        return split_hunks(diff), "bench splitter"
    return [unit.original for unit in plan_diff(diff).units], "reviewbot.diffplan"


def cuda_peak_bytes(device: str) -> int | None:
    """``torch.cuda.max_memory_allocated`` of ``device`` when it is a CUDA device, else None."""
    if not device.startswith("cuda"):
        return None
    return int(torch.cuda.max_memory_allocated(device))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_batched(engine: Engine, prompts: list[str], new: int) -> tuple[list[str], dict]:
    outputs = engine.generate(prompts, max_new_tokens=new)
    return outputs, summary(engine.last_stats)


def run_sequential(engine: Engine, prompts: list[str], new: int) -> tuple[list[str], dict]:
    outputs: list[str] = []
    stats: list[GenerationStats] = []
    for prompt in prompts:
        outputs += engine.generate([prompt], max_new_tokens=new)
        stats.append(engine.last_stats)
    total = GenerationStats(
        prompts=len(prompts),
        prompt_tokens=sum(s.prompt_tokens for s in stats),
        generated_tokens=sum(s.generated_tokens for s in stats),
        seconds=sum(s.seconds for s in stats),
        first_output_seconds=stats[0].seconds if stats else None,
    )
    return outputs, summary(total)


def summary(stats: GenerationStats) -> dict[str, Any]:
    return {
        "prompts": stats.prompts,
        "prompt_tokens": stats.prompt_tokens,
        "generated_tokens": stats.generated_tokens,
        "seconds": round(stats.seconds, 3),
        "tokens_per_s": round(stats.tokens_per_second, 2),
        "first_comment_s": round(stats.first_output_seconds or 0.0, 3),
    }


def footprints(engine: Engine) -> dict[str, int]:
    """The model's memory footprint in 4-bit NF4 and in bf16 (each loaded once more)."""
    from transformers import AutoModelForCausalLM

    sizes = {"loaded": engine.footprint_bytes}
    if engine.quantized:
        sizes["4bit"] = engine.footprint_bytes
    else:
        four = load_engine(engine.model_path, quantize="4bit", device=engine.device)
        sizes["4bit"] = four.footprint_bytes
        del four
    bf16 = AutoModelForCausalLM.from_pretrained(engine.model_path, dtype=torch.bfloat16)
    sizes["bf16"] = int(bf16.get_memory_footprint())
    return sizes


def build_tiny(workdir: str) -> str:
    """The test suite's tiny random model, built in ``workdir``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tinymodel import build_tiny_model

    return str(build_tiny_model(Path(workdir) / "tiny"))


def measure(args: argparse.Namespace, model: str, device: str) -> dict[str, Any]:
    """Load ``model`` on ``device`` and time both modes (run in a child process)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    diff = Path(args.diff).read_text(encoding="utf-8") if args.diff else builtin_diff()
    hunks, source = hunks_of(diff)
    if len(hunks) < args.hunks:
        raise SystemExit(f"the diff has {len(hunks)} hunks, fewer than --hunks {args.hunks}")
    hunks = hunks[: args.hunks]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    started = time.perf_counter()
    engine = load_engine(model, quantize=args.quantize, settings=settings, device=device)
    load_s = time.perf_counter() - started
    rss_loaded, cuda_loaded = peak_rss_bytes(), cuda_peak_bytes(engine.device)
    prompts = [engine.renderer.task("critique", ORIGINAL=h) for h in hunks]
    # warm-up: first-call overheads, of one prompt and of a padded batch
    engine.generate(prompts[:1], max_new_tokens=2)
    engine.generate(prompts[: args.batch_size], max_new_tokens=2)
    batched_out, batched = run_batched(engine, prompts, args.max_new_tokens)
    sequential_out, sequential = run_sequential(engine, prompts, args.max_new_tokens)
    rss, cuda_peak = peak_rss_bytes(), cuda_peak_bytes(engine.device)
    result = {
        "model": engine.model_name,
        "device": engine.device,
        "quantized": engine.quantized,
        "prompt_format": engine.prompt_format,
        "hunks": len(hunks),
        "hunk_source": source,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "load_s": round(load_s, 2),
        "batched": batched,
        "sequential": sequential,
        "speedup": round(batched["tokens_per_s"] / max(sequential["tokens_per_s"], 1e-9), 2),
        "first_comment_ratio": round(
            batched["first_comment_s"] / max(sequential["first_comment_s"], 1e-9), 2
        ),
        "identical_outputs": batched_out == sequential_out,
        "peak_rss_bytes_loaded": rss_loaded,
        "peak_rss_bytes_generation": rss,
        "footprint_bytes": footprints(engine),
        "peak_rss_bytes": peak_rss_bytes(),
        "sample_output": batched_out[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    if cuda_peak is not None:
        result["cuda_peak_allocated_bytes_loaded"] = cuda_loaded
        result["cuda_peak_allocated_bytes"] = cuda_peak
        result["gpu"] = torch.cuda.get_device_name()
    return result


def devices(choice: str) -> list[str]:
    """``auto``: the CPU, and CUDA too when it is available; else the listed ones."""
    if choice == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    wanted = [d.strip() for d in choice.split(",") if d.strip()]
    if any(d.startswith("cuda") for d in wanted) and not torch.cuda.is_available():
        raise SystemExit("--devices names CUDA but torch.cuda.is_available() is False")
    return wanted


def measure_in_child(args: argparse.Namespace, model: str, device: str) -> dict[str, Any]:
    """``measure`` in a fresh process: its peak RSS and CUDA peak are this device's alone."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(measure, args, model, device).result()


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def table(r: dict[str, Any]) -> str:
    b, s, f = r["batched"], r["sequential"], r["footprint_bytes"]
    mode = "4-bit NF4" if r["quantized"] else "full precision"
    rows = [
        f"model {r['model']} on {r['device']} ({mode}), format {r['prompt_format']}, "
        f"{r['hunks']} hunks ({r['hunk_source']}), max_new_tokens {r['max_new_tokens']}, "
        f"batch {r['batch_size']}, load {r['load_s']}s",
        "",
        f"{'mode':<12}{'tokens':>8}{'seconds':>10}{'tok/s':>9}{'first comment':>15}",
        f"{'batched':<12}{b['generated_tokens']:>8}{b['seconds']:>10.2f}"
        f"{b['tokens_per_s']:>9.2f}{b['first_comment_s']:>14.2f}s",
        f"{'sequential':<12}{s['generated_tokens']:>8}{s['seconds']:>10.2f}"
        f"{s['tokens_per_s']:>9.2f}{s['first_comment_s']:>14.2f}s",
        "",
        f"batched/sequential tokens/s: {r['speedup']:.2f}x; first comment: "
        f"{r['first_comment_ratio']:.2f}x; identical outputs: "
        f"{'yes' if r['identical_outputs'] else 'no'}",
        f"footprint: loaded {mb(f['loaded'])}, 4-bit {mb(f['4bit'])}, bf16 {mb(f['bf16'])}",
        f"peak RSS: {mb(r['peak_rss_bytes_loaded'])} after loading, "
        f"{mb(r['peak_rss_bytes_generation'])} after generating, "
        f"{mb(r['peak_rss_bytes'])} after the footprint loads",
    ]
    if "cuda_peak_allocated_bytes" in r:
        rows.append(
            f"CUDA peak allocated: {mb(r['cuda_peak_allocated_bytes_loaded'])} after loading, "
            f"{mb(r['cuda_peak_allocated_bytes'])} after generating ({r['gpu']})"
        )
    return "\n".join(rows)


FIRST_COMMENT = (
    "first comment: seconds from the generate call until the first critique is complete "
    "(batched: the first batch, longest prompts first; sequential: the first hunk)"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEMO_MODEL, help="smollm2 (default), tiny, a dir or hub id")
    p.add_argument("--hunks", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto")
    p.add_argument(
        "--devices", default="auto", help="auto (CPU, + CUDA when available), cpu, cuda, cpu,cuda"
    )
    p.add_argument("--diff", help="take the hunks from this diff instead of the built-in one")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the figures")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    targets = devices(args.devices)
    with tempfile.TemporaryDirectory(prefix="reviewbot-bench-") as workdir:
        model = build_tiny(workdir) if args.model == "tiny" else args.model
        runs = [measure_in_child(args, model, device) for device in targets]
    print("\n\n".join(table(r) for r in runs), flush=True)
    print(f"\n{FIRST_COMMENT}", flush=True)
    result = {"bench": "generation", "runs": runs}
    write_figures(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
