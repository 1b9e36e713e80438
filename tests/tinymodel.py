"""A tiny random-weight Llama with a locally trained tokenizer, for tests and benches.

Nothing is downloaded: the byte-level BPE tokenizer is trained with ``tokenizers``
on a small built-in corpus, the model is a seeded ``LlamaConfig`` with two layers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SEED = 1234
VOCAB_SIZE = 512
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: A ChatML-style template, for the "chat" prompt format.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n\n",
    "\n\n### Response:\n\n",
    "Human: Assistant: ",
    "Please critique the following codes based on their requirements: \n\nORIGINAL:\n",
    "Please revise the following codes based on their requirement and comment: \n\n"
    "ORIGINAL:\n\n\nCOMMENT:\n",
    "Please summarise the flaws of the code by comparing the original code and its revise: "
    "\n\nORIGINAL:\n\n\nREVISED:\n",
    "def add(a, b):\n    return a + b\n",
    "def load(path: str) -> dict:\n    with open(path) as f:\n        return json.load(f)\n",
    "for i in range(len(items)):\n    if items[i] is None:\n        continue\n",
    "class Cache:\n    def __init__(self):\n        self.data = {}\n\n"
    "    def get(self, key):\n        return self.data.get(key)\n",
    "import os\nimport sys\n\nif __name__ == '__main__':\n    sys.exit(main())\n",
    "try:\n    value = int(text)\nexcept ValueError:\n    value = 0\n",
    "The variable name is unclear. Consider a more descriptive name.\n",
    "This function does not handle the error case; raise an exception instead.\n",
    "Use a context manager so the file is closed.\n",
    "function main() { const x = await fetch(url); return x.json(); }\n",
    "SELECT id, name FROM users WHERE active = 1 ORDER BY name;\n",
]


def train_tokenizer() -> object:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on the built-in corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def _unwanted_tokens(tokenizer: object) -> list[int]:
    """Special tokens (EOS, padding, ...) and tokens that decode to no readable text."""
    unwanted = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        readable = text.strip() and all(ch.isprintable() or ch in "\n\t" for ch in text)
        if token_id in tokenizer.all_special_ids or not readable or "\ufffd" in text:
            unwanted.append(token_id)
    return unwanted


def _suppress(model: torch.nn.Module, token_ids: list[int]) -> None:
    """Keep ``token_ids`` from ever winning greedy decoding.

    A zero output row gives a logit of exactly 0, while the random rows of the
    hundreds of remaining tokens always include some with positive logits; so
    greedy output is never empty (no EOS) and always readable text.
    """
    with torch.no_grad():
        model.lm_head.weight[token_ids] = 0.0


def build_tiny_model(path: str | Path, chat_template: str | None = None) -> Path:
    """Write a tiny seeded Llama + tokenizer to ``path`` (deterministic); returns it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    if chat_template:
        tokenizer.chat_template = chat_template
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    _suppress(model, _unwanted_tokens(tokenizer))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_adapter(
    path: str | Path, base: str | Path, prompt_format: str = "alpaca", scale: float = 0.03
) -> Path:
    """Write a seeded LoRA adapter on ``base`` with non-zero B weights + reviewbot.json."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from reviewbot.review.prompts import template_fingerprint
    from reviewbot.settings.defaults import ADAPTER_METADATA

    out = Path(path)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=list(LORA_TARGETS),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(out)
    meta = {
        "base_model": str(base),
        "prompt_format": prompt_format,
        "template_fingerprint": template_fingerprint(),
    }
    (out / ADAPTER_METADATA).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def overfit_tiny_model(
    base: str | Path,
    path: str | Path,
    pairs: list[tuple[str, str]],
    steps: int = 300,
    lr: float = 1e-2,
) -> Path:
    """A copy of ``base`` trained until greedy decoding of each prompt gives its target.

    Full-parameter training on the response tokens only (a plain torch loop), so
    tests can have a tiny model say exactly what a scenario needs: it is then
    loaded through the production engine like any other model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    rows = []
    for prompt, target in pairs:
        p = tokenizer(prompt)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((torch.tensor([p + t]), torch.tensor([[-100] * len(p) + t])))
    torch.manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = sum(model(input_ids=ids, labels=labels).loss for ids, labels in rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 2e-3 * len(rows):
            break
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
