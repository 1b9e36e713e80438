"""Noise control: empty / "looks good" / code-echo critiques are dropped,
runaway generations cut, repetitions collapsed, near-duplicates grouped."""

from reviewbot.review.noise import clean_completion, group_duplicates, noise_reason
from reviewbot.settings.defaults import NoiseSettings

S = NoiseSettings()
CODE = "def add(a, b):\n    total = a + b\n    return total"


def reason(text, code=CODE):
    return noise_reason(clean_completion(text, S.max_critique_chars), code, S)


def test_actionable_critiques_are_kept():
    assert reason("The function does not validate that a and b are numbers.") is None
    assert reason("Use `sum` here; `total` is an unnecessary temporary variable.") is None


def test_empty_and_trivial_critiques_are_dropped():
    assert reason("") == "empty"
    assert reason("   \n  ") == "empty"
    assert reason("Ok.") == "too short"


def test_looks_good_critiques_are_dropped():
    for text in (
        "Looks good to me!",
        "LGTM",
        "The code looks fine.",
        "No issues found here.",
        "None",
        "The code is correct and needs no changes.",
    ):
        assert reason(text) == "no finding", text
    # a long critique that mentions "looks good" but says more is kept
    long = (
        "The loop looks good, but the function never closes the file handle it opens, "
        "so descriptors leak under load; wrap it in a with-statement."
    )
    assert reason(long) is None


def test_code_echo_is_dropped():
    assert reason(CODE) == "repeats the code"
    assert reason("```python\n" + CODE + "\n```") == "repeats the code"
    assert reason("def add(a, b):\n    total = a + b\n    return total  # ok") == "repeats the code"


def test_degenerate_repetition_is_dropped_or_collapsed():
    text = "Use a constant. " * 80
    cleaned = clean_completion(text, S.max_critique_chars)
    assert cleaned == "Use a constant."  # repeated sentence collapsed
    assert reason("ab " * 300) == "degenerate repetition"


def test_runaway_generation_is_cut_at_the_next_prompt():
    text = "Name the magic number.\n\n### Instruction:\nPlease critique the following"
    assert clean_completion(text, 2000) == "Name the magic number."
    assert clean_completion("Fix it.\nHuman: more?", 2000) == "Fix it."


def test_long_critiques_are_cut_at_a_sentence():
    text = "This is a sentence about the code. " * 10 + "x" * 3000
    out = clean_completion(text, 500)
    assert len(out) <= 502 and out.endswith("…")


def test_near_duplicates_group_and_distinct_ones_do_not():
    texts = [
        "Avoid a mutable default argument; use None and create the dict inside.",
        "Handle the missing key explicitly instead of a bare except.",
        "Avoid a mutable default argument: use None and create the dict inside!",
    ]
    assert group_duplicates(texts, S.duplicate_ratio) == [[0, 2], [1]]
