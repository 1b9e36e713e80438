"""Evaluation metrics (pure): CodeReviewer's smoothed BLEU-4, ROUGE-L, exact match.

:func:`codereviewer_bleu` reproduces the evaluator CodeReviewer (microsoft/CodeBERT,
``CodeReviewer/code/evaluator/smooth_bleu.py``, MIT) reports its comment-generation
BLEU with (5.32 on its test set): ``nltk.wordpunct_tokenize``, stop words removed
(case-sensitive, before lower-casing), lower-cased, split into words and single
punctuation characters, NIST mteval-v11a normalisation, then sentence-level BLEU-4
with add-one smoothing of the 2- to 4-gram precisions and the brevity penalty
``min(0, 1 - (r + 1) / (c + 1))``, averaged over sentences and times 100.
"""

from __future__ import annotations

import math
import re
import sys
import xml.sax.saxutils
from collections import Counter
from collections.abc import Sequence

#: CodeReviewer's evaluator/stopwords.txt (microsoft/CodeBERT, MIT licence), in order.
_STOPWORDS_TEXT = """
about above abroad according accordingly across actually adj after afterwards again against
ago ahead ain't all almost alone along alongside already also although always am amid amidst
among amongst an and any anybody anyhow anyone anything anyway anyways anywhere apart appear
appropriate are aren't around as a's aside associated at available away awfully back
backward backwards be became because become becomes becoming been before beforehand begin
behind being believe below best better between beyond both brief but by came can cannot cant
can't caption cause causes certain certainly clearly c'mon co co. com come comes concerning
consequently contain containing contains corresponding could couldn't course c's dare
daren't definitely described despite did didn't different directly do does doesn't doing
don't down downwards during each edu eg eight eighty either elsewhere end ending entirely et
etc even ever evermore every everybody everyone everything everywhere ex exactly except
fairly far farther few fewer fifth first five followed following follows for forever former
formerly forth forward found four from further furthermore get gets getting given gives go
goes going gone got gotten greetings had hadn't half happens hardly has hasn't have haven't
having he he'd he'll hello help hence her here hereafter hereby herein here's hereupon hers
herself he's hi him himself his hither hopefully how howbeit however hundred i'd ie if
ignored i'll i'm immediate in inasmuch inc inc. indeed indicate indicated indicates inner
inside insofar into inward is isn't it it'd it'll its it's itself i've just k keep keeps
kept know known knows last lately later latter latterly least less lest let let's like liked
likely likewise little look looking looks low lower ltd made mainly make makes many may
maybe mayn't me mean meantime meanwhile merely might mightn't mine minus moreover most
mostly mr mrs much must mustn't my myself name namely nd near nearly needn't neither never
neverf neverless nevertheless next nine ninety no nobody non none nonetheless noone no-one
nor normally not nothing notwithstanding novel now nowhere obviously of off often oh ok okay
old on once one ones one's only onto opposite or otherwise ought oughtn't our ours ourselves
out outside over overall own particular particularly past per perhaps placed plus possible
presumably probably que quite qv rather rd re really reasonably recent recently regarding
regardless regards relatively respectively right round said same saw say saying says second
secondly see seeing seem seemed seeming seems seen self selves sensible sent seven several
shall shan't she she'd she'll she's should shouldn't since six so somebody someday somehow
someone something sometime sometimes somewhat somewhere sorry specified specify specifying
still sub such sup sure take taken taking tell tends th than that that'll thats that's
that've the their theirs them themselves then thence there thereafter thereby there'd
therefore therein there'll there're theres there's thereupon there've these they they'd
they'll they're they've thing things think third thirty this thorough thoroughly those
though three through throughout thru thus till to together too took toward towards tried
tries truly try trying t's twice two un under underneath undoing unfortunately unless unlike
unlikely until unto up upon upwards us use used uses using usually v value various versus
very via viz vs was wasn't way we we'd well we'll went were we're weren't we've what
whatever what'll what's what've when whence whenever where whereafter whereas whereby
wherein where's whereupon wherever whether which whichever while whilst whither who who'd
whoever whole who'll whom whomever who's whose why will with within without wonder won't
would wouldn't yes yet you you'd you'll your you're yours yourself yourselves you've zer
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())

_WORDPUNCT = re.compile(r"\w+|[^\w\s]+")
_SPLIT_PUNCTS = re.compile(r"\w+|[^\s\w]")
# NIST mteval-v11a normalisation, as in CodeReviewer's smooth_bleu.normalize.
_NORMALIZE1 = [
    (re.compile("<skipped>"), ""),
    (re.compile(r"-\n"), ""),
    (re.compile(r"\n"), " "),
]
_NORMALIZE2 = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]
_NGRAM = 4
_TINY = sys.float_info.min


def wordpunct_tokenize(text: str) -> list[str]:
    """``nltk.wordpunct_tokenize``: runs of word characters and of other non-space."""
    return _WORDPUNCT.findall(text)


def nist_normalize(text: str) -> list[str]:
    """Lower-case and tokenise like NIST mteval-v11a (CodeReviewer's ``normalize``)."""
    for pattern, repl in _NORMALIZE1:
        text = pattern.sub(repl, text)
    text = xml.sax.saxutils.unescape(text, {"&quot;": '"'})
    text = f" {text} ".lower()
    for pattern, repl in _NORMALIZE2:
        text = pattern.sub(repl, text)
    return text.split()


def codereviewer_tokens(text: str, remove_stopwords: bool = True) -> list[str]:
    """The tokens CodeReviewer's evaluator scores ``text`` on."""
    words = wordpunct_tokenize(text.replace("\t", " "))
    if remove_stopwords:
        words = [w for w in words if w not in STOPWORDS]
    joined = " ".join(words).strip().lower()
    return nist_normalize(" ".join(_SPLIT_PUNCTS.findall(joined)))


def _ngrams(words: Sequence[str], n: int = _NGRAM) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def smoothed_sentence_bleu(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """Sentence BLEU-4 (0..1) of token lists, add-one smoothed for n > 1."""
    ref_counts = _ngrams(reference)
    correct = [0] * _NGRAM
    for gram, count in _ngrams(hypothesis).items():
        correct[len(gram) - 1] += min(ref_counts.get(gram, 0), count)
    log_bleu = 0.0
    for k in range(_NGRAM):
        guess = max(len(hypothesis) - k, 0)
        add = 1 if k > 0 else 0
        log_bleu += math.log(correct[k] + add + _TINY) - math.log(guess + add + _TINY)
    log_bleu /= _NGRAM
    brevity = min(0.0, 1 - (len(reference) + 1) / (len(hypothesis) + 1))
    return math.exp(log_bleu + brevity)


def codereviewer_bleu(
    references: Sequence[str], hypotheses: Sequence[str], remove_stopwords: bool = True
) -> float:
    """CodeReviewer's BLEU-4 (0..100): the mean smoothed sentence BLEU of the pairs."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    if not references:
        return 0.0
    total = sum(
        smoothed_sentence_bleu(
            codereviewer_tokens(ref, remove_stopwords), codereviewer_tokens(hyp, remove_stopwords)
        )
        for ref, hyp in zip(references, hypotheses, strict=True)
    )
    return 100.0 * total / len(references)


_ROUGE_TOKEN = re.compile(r"\w+")


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased word tokens for ROUGE-L."""
    return _ROUGE_TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(reference: str, hypothesis: str) -> float:
    """ROUGE-L F-measure (0..1): the harmonic mean of LCS precision and recall."""
    ref, hyp = rouge_tokens(reference), rouge_tokens(hypothesis)
    if not ref or not hyp:
        return 1.0 if not ref and not hyp else 0.0
    lcs = lcs_length(ref, hyp)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (0..100) of the pairs."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    if not references:
        return 0.0
    pairs = zip(references, hypotheses, strict=True)
    return 100.0 * sum(rouge_l(r, h) for r, h in pairs) / len(references)


def normalise_whitespace(text: str) -> str:
    """``text`` with every run of whitespace made one space, ends stripped."""
    return " ".join(text.split())


def exact_match(reference: str, hypothesis: str) -> bool:
    """Equal up to whitespace (CodeReviewer's refinement exact match)."""
    return normalise_whitespace(reference) == normalise_whitespace(hypothesis)


def covers(start: int, end: int, line: int) -> bool:
    """Whether a comment anchored on ``start``..``end`` covers ``line``."""
    return start <= line <= end


def share(hits: int, total: int) -> float | None:
    """``hits / total`` (None when there is nothing to measure)."""
    return hits / total if total else None
