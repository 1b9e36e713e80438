"""Template text equals the seed model card's, and the renderer's rules."""

import pytest

from reviewbot.review.prompts import (
    MissingPlaceholder,
    PromptFormatError,
    Renderer,
    Turn,
    fill,
    format_names,
    render_task,
    task_text,
    template_fingerprint,
)
from reviewbot.settings.defaults import PROMPT_FORMATS

# Word for word from the seed model card (ARCHITECTURE.md).
SEED_CRITIQUE = (
    "Please critique the following codes based on their requirements: \n\nORIGINAL:\n{ORIGINAL}"
)
SEED_REVISE = (
    "Please revise the following codes based on their requirement and comment: "
    "\n\nORIGINAL:\n{ORIGINAL}\n\nCOMMENT:\n{CRITIQUE}"
)
SEED_SUMMARISE = (
    "Please summarise the flaws of the code by comparing the original code and its revise: "
    "\n\nORIGINAL:\n{ORIGINAL}\n\nREVISED:\n{REVISED}"
)
ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n\n{CONTENT}\n\n### Response:\n\n"
)


def test_task_texts_are_the_seed_cards_word_for_word():
    assert task_text("critique") == SEED_CRITIQUE
    assert task_text("revise") == SEED_REVISE
    assert task_text("summarise") == SEED_SUMMARISE


def test_alpaca_wraps_a_task_exactly():
    prompt = Renderer("alpaca").task("critique", ORIGINAL="x = 1")
    assert prompt == ALPACA.replace("{CONTENT}", SEED_CRITIQUE.replace("{ORIGINAL}", "x = 1"))


def test_alpaca_dialogue_renders_history_then_question():
    turns = [Turn("user", "H1"), Turn("assistant", "A1"), Turn("user", "Q")]
    got = Renderer("alpaca-dialogue").dialogue(turns)
    assert got == ALPACA.replace("{CONTENT}", "Human:H1\nAssistant:A1\nHuman:Q")


def test_alpaca_with_history_uses_the_dialogue_variant():
    turns = [Turn("user", "H1"), Turn("assistant", "A1"), Turn("user", "Q")]
    assert Renderer("alpaca").dialogue(turns) == Renderer("alpaca-dialogue").dialogue(turns)


def test_chat_format_goes_through_the_chat_template():
    seen = []

    def template(messages):
        seen.append(messages)
        return "<chat>" + "|".join(f"{m['role']}:{m['content']}" for m in messages)

    r = Renderer("chat", chat_template=template)
    assert r.task("critique", ORIGINAL="y") == "<chat>user:" + SEED_CRITIQUE.replace(
        "{ORIGINAL}", "y"
    )
    assert seen[0] == [{"role": "user", "content": SEED_CRITIQUE.replace("{ORIGINAL}", "y")}]


def test_chat_without_template_and_unknown_format_are_errors():
    with pytest.raises(PromptFormatError, match="chat template"):
        Renderer("chat")
    with pytest.raises(PromptFormatError, match="unknown prompt format"):
        Renderer("vicuna")


def test_the_templates_define_exactly_the_formats_the_defaults_list():
    assert format_names() == PROMPT_FORMATS == ("alpaca", "alpaca-dialogue", "chat")


def test_missing_placeholder_raises_not_empty():
    with pytest.raises(MissingPlaceholder, match="CRITIQUE"):
        render_task("revise", ORIGINAL="code")
    with pytest.raises(MissingPlaceholder, match="REVISED"):
        render_task("summarise", ORIGINAL="code", REVISED=None)


def test_values_are_inserted_verbatim_and_never_substituted_again():
    code = 'print(f"{ORIGINAL} {CRITIQUE} {x}")\n{REVISED}'
    got = render_task("revise", ORIGINAL=code, CRITIQUE="{ORIGINAL}")
    head, tail = SEED_REVISE.split("{ORIGINAL}")
    assert got == head + code + tail.replace("{CRITIQUE}", "{ORIGINAL}")
    assert fill("{A}{B}", {"A": "{B}", "B": "b"}) == "{B}b"


def test_dialogue_must_end_with_a_user_turn():
    with pytest.raises(ValueError, match="user turn"):
        Renderer().dialogue([Turn("user", "q"), Turn("assistant", "a")])


def test_templates_ship_inside_the_package():
    from importlib import resources

    files = {p.name for p in resources.files("reviewbot.templates").iterdir()}
    assert {"tasks.toml", "formats.toml"} <= files
    assert len(template_fingerprint()) == 16


def test_extra_instructions_are_appended_through_the_template():
    got = render_task("critique", "Prefer pathlib.", ORIGINAL="x")
    assert (
        got == SEED_CRITIQUE.replace("{ORIGINAL}", "x") + "\n\nREVIEW GUIDELINES:\nPrefer pathlib."
    )
    assert render_task("critique", "  ", ORIGINAL="x") == SEED_CRITIQUE.replace("{ORIGINAL}", "x")
