"""finetune.metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from finetune.metrics import (
    STOPWORDS,
    codereviewer_bleu,
    codereviewer_tokens,
    covers,
    exact_match,
    lcs_length,
    mean_rouge_l,
    nist_normalize,
    rouge_l,
    share,
    smoothed_sentence_bleu,
    wordpunct_tokenize,
)


def test_wordpunct_tokenize_splits_words_and_punctuation_runs() -> None:
    assert wordpunct_tokenize("Don't use `eval()`!!") == [
        "Don",
        "'",
        "t",
        "use",
        "`",
        "eval",
        "()`!!",
    ]


def test_codereviewer_stopword_list_is_the_evaluators() -> None:
    assert len(STOPWORDS) == 592
    assert {"the", "use", "name", "value", "zer", "c'mon"} <= STOPWORDS
    assert "a" not in STOPWORDS and "bug" not in STOPWORDS


def test_codereviewer_tokens_remove_stopwords_before_lowercasing() -> None:
    # "the" and "use" are stop words; "The" is not (the evaluator compares case-sensitively).
    assert codereviewer_tokens("The fix: use the new API.") == [
        "the",
        "fix",
        ":",
        "new",
        "api",
        ".",
    ]
    assert codereviewer_tokens("The fix: use the new API.", remove_stopwords=False) == [
        "the",
        "fix",
        ":",
        "use",
        "the",
        "new",
        "api",
        ".",
    ]


def test_nist_normalisation_unescapes_and_keeps_decimal_numbers() -> None:
    assert nist_normalize("a&amp;b") == ["a", "&", "b"]
    # A dash is split off only after a digit; a period or comma only next to a non-digit.
    assert nist_normalize("pi is 3.14, e-notation 3-4") == [
        "pi",
        "is",
        "3.14",
        ",",
        "e-notation",
        "3",
        "-",
        "4",
    ]
    assert nist_normalize("line-\nbreak") == ["linebreak"]


def test_sentence_bleu_by_hand() -> None:
    # ref a context manager / hyp a manager ("use" is a stop word):
    # p1 = 2/2, p2 = (0+1)/(1+1), p3 = p4 = (0+1)/(0+1); BP = 1 - (3+1)/(2+1).
    expected = 100 * math.exp(math.log(0.5) / 4 + (1 - 4 / 3))
    assert codereviewer_bleu(["use a context manager"], ["use a manager"]) == pytest.approx(
        expected, abs=1e-9
    )
    assert expected == pytest.approx(60.2529, abs=1e-3)


def test_bleu_of_identical_and_empty_hypotheses() -> None:
    assert codereviewer_bleu(["Close the file here."], ["Close the file here."]) == 100.0
    # Empty hypothesis: every smoothed precision is 1, only the brevity penalty counts.
    assert smoothed_sentence_bleu(["a", "b", "c"], []) == pytest.approx(math.exp(-3))
    assert codereviewer_bleu(["bug"], [""]) == pytest.approx(100 * math.exp(-1))


def test_unigram_misses_are_not_smoothed() -> None:
    assert smoothed_sentence_bleu(["x"], ["y"]) < 1e-70


def test_corpus_bleu_is_the_mean_of_sentence_bleus() -> None:
    refs, hyps = ["use a context manager", "fix"], ["use a manager", "fix"]
    one = codereviewer_bleu(refs[:1], hyps[:1])
    assert codereviewer_bleu(refs, hyps) == pytest.approx((one + 100.0) / 2)
    with pytest.raises(ValueError, match="2 references for 1 hypotheses"):
        codereviewer_bleu(refs, hyps[:1])
    assert codereviewer_bleu([], []) == 0.0


def test_rouge_l_by_hand() -> None:
    assert lcs_length(["the", "cat", "sat", "on", "the", "mat"], ["the", "cat", "on", "mat"]) == 4
    # P = 4/4, R = 4/6 → F = 2PR / (P + R) = 0.8
    assert rouge_l("The cat sat on the mat", "the cat, on mat") == pytest.approx(0.8)
    assert rouge_l("same words", "Same words!") == 1.0
    assert rouge_l("abc", "xyz") == 0.0
    assert rouge_l("", "") == 1.0 and rouge_l("a", "") == 0.0
    assert mean_rouge_l(["a b", "a b"], ["a b", "c"]) == pytest.approx(50.0)


def test_exact_match_ignores_whitespace_only() -> None:
    assert exact_match("def f(x):\n    return x\n", "def f(x):\n  return x")
    assert not exact_match("return x", "return  y")
    references = ["a = 1", "b = [1,\n 2]"]
    hits = sum(exact_match(r, r) for r in references)
    assert share(hits, len(references)) == 1.0
    assert share(0, 0) is None


def test_covers() -> None:
    assert covers(3, 5, 3) and covers(3, 5, 5) and not covers(3, 5, 6)


# Golden values from CodeReviewer's own evaluator, not from finetune.metrics: the file
# CodeReviewer/code/evaluator/smooth_bleu.py of microsoft/CodeBERT (MIT), commit
# 5488f12b50f33fda9970e55dee452f1d2799cfa7, with its evaluator/stopwords.txt (same commit),
# copied verbatim to a scratch directory and run under Python 3.11 with nltk 3.10.4 as
# ``bleu_fromstr(hypotheses, references, rmstop=True)``, which is how run_test_msg.py
# (eval_epoch_bleu) reports comment-generation BLEU: the mean of smoothed sentence BLEU-4
# scores times 100, rounded to 2 decimals. The per-pair values are bleu_fromstr on each pair
# alone; the rmstop=False figure is the "WithStop BLEU" it also logs.
_CODEREVIEWER_GOLDEN = [  # (reference, hypothesis, bleu_fromstr([hyp], [ref], rmstop=True))
    # identical
    (
        "Please add a null check before dereferencing `user`.",
        "Please add a null check before dereferencing `user`.",
        100.0,
    ),
    # no overlap ("in", "name", "this" are stop words)
    ("Typo in variable name", "Consider caching this result", 0.0),
    # partial n-gram overlap, hypothesis not shorter
    (
        "This loop can be replaced with a list comprehension.",
        "This can be a list comprehension instead.",
        39.17,
    ),
    # hypothesis shorter than the reference: brevity penalty
    (
        "Please close the file handle in a finally block to avoid leaking descriptors.",
        "Close the file handle.",
        17.44,
    ),
    # punctuation and case ("NOT" is kept, "not" is a stop word)
    ("Why not use `os.path.join()` here?", "why NOT use os.path.join here", 39.33),
    # stop words ("We" is kept, "we" is not)
    (
        "We should not use the global variable here, it is not thread-safe.",
        "we should avoid the global variable; not thread safe",
        24.40,
    ),
    # empty hypothesis: exp(-5), the brevity penalty of 5 reference tokens
    ("Missing test for the error path.", "", 0.67),
    # multi-line comment with code, an entity, numbers and a dash
    (
        "nit: this `if` is redundant.\n\n```python\nif x is not None:\n"
        "    return x &amp; 0xFF\n```\nv2 of the API returns 3.14, not 3-4.",
        "Nit: the `if` here is redundant:\n```\nreturn x & 0xFF\n```\nSee API v2 (3.14).",
        31.13,
    ),
]


def test_codereviewer_bleu_matches_codereviewers_own_evaluator() -> None:
    refs = [ref for ref, _, _ in _CODEREVIEWER_GOLDEN]
    hyps = [hyp for _, hyp, _ in _CODEREVIEWER_GOLDEN]
    for ref, hyp, golden in _CODEREVIEWER_GOLDEN:
        assert codereviewer_bleu([ref], [hyp]) == pytest.approx(golden, abs=5e-3), (ref, hyp)
        tokens = codereviewer_tokens(ref), codereviewer_tokens(hyp)
        assert 100 * smoothed_sentence_bleu(*tokens) == pytest.approx(golden, abs=5e-3)
    assert codereviewer_bleu(refs, hyps) == pytest.approx(31.52, abs=5e-3)
    assert codereviewer_bleu(refs, hyps, remove_stopwords=False) == pytest.approx(28.41, abs=5e-3)
