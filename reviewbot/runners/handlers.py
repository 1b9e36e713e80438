"""The slash-command handlers: one function per entry of the command table.

Each handler gets a :class:`CommandContext` (the job, its parsed command, the
GitHub and model ports, the pull request) and answers the command once, with
``ctx.reply`` or a review; it returns the job's :class:`~reviewbot.runners.ports.Outcome`.
Answers are posted under the pull request's lock, after checking again that no other
job answered the comment meanwhile (:class:`AlreadyAnswered` otherwise).
A failure it raises is answered by the command runner (:mod:`reviewbot.runners.command`).
Each handler is registered for its command with :func:`handles`; a command of the
table (:data:`reviewbot.jobs.commands.COMMANDS`) without a handler fails at import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from reviewbot.github.conversation import (
    ThreadComment,
    ask_turns,
    clean_answer,
    dialogue_renderer,
    finding_critique,
    help_text,
    pr_context,
    quote,
    revise_comment,
    revision_reply,
    summary_reply,
    thread_unit,
)
from reviewbot.github.data import CommentInfo, PullInfo
from reviewbot.github.markers import (
    Markers,
    parse_markers,
    reply_marker,
    review_fingerprint,
    review_marker,
    state_marker,
)
from reviewbot.github.payload import build_review_payload
from reviewbot.jobs.commands import COMMANDS, Command, CommandError, parse_command
from reviewbot.jobs.job import Job
from reviewbot.review.confidence import below_confidence, rated, sure_enough
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.findings import Comment, Finding, Review, anchored_code, fingerprint
from reviewbot.review.pipeline import (
    attach_revision,
    critique_prompts,
    not_posted,
    review_plan,
    revise_prompts,
    to_comment,
)
from reviewbot.review.prompts import hunk_original
from reviewbot.review.units import ReviewUnit
from reviewbot.runners.describing import DESCRIPTION_MARKER, description_text, write_into_body
from reviewbot.runners.ports import (
    PROCESS_LOCKS,
    EngineProvider,
    FindingStore,
    GitHubPort,
    Outcome,
    PullLocks,
    rating,
)
from reviewbot.runners.recording import suppression_sentence
from reviewbot.runners.review import head_reader, run_review_job
from reviewbot.settings.defaults import SERVER_REVIEW_DEFAULTS, ReviewOptions
from reviewbot.settings.repo import RepoConfig, RepoConfigError

log = logging.getLogger(__name__)


class AlreadyAnswered(Exception):
    """Another job answered the command comment while this one worked: post nothing."""

    def __init__(self, comment_id: int) -> None:
        super().__init__(f"comment {comment_id} was answered by another job")
        self.comment_id = comment_id


@dataclass(frozen=True)
class CommandContext:
    """What a handler works with; ``job.head_sha`` is the pull request's current head."""

    job: Job
    command: Command
    gh: GitHubPort
    engines: EngineProvider
    pull: PullInfo
    posted: Markers
    """reviewbot's markers on the pull request, read when the job started."""
    review_drafts: bool = False
    """The server's default for repositories that do not say whether drafts are reviewed."""
    locks: PullLocks = PROCESS_LOCKS
    """The pull request's lock, held from re-reading the markers to posting."""
    defaults: ReviewOptions = SERVER_REVIEW_DEFAULTS
    """What a review produces where a repository does not say (the server's profile
    threshold and ``changed_lines``)."""
    store: FindingStore | None = None
    """Where posted findings and their outcomes are kept (None: nowhere)."""

    def options(self, config: RepoConfig) -> ReviewOptions:
        """What a review produces for this repository (its settings over the server's)."""
        return config.review_options(self.defaults)

    @property
    def head(self) -> str:
        return self.pull.head_sha

    def config(self) -> RepoConfig:
        """The repository's ``.github/reviewbot.toml`` (RepoConfigError when invalid)."""
        return self.gh.repo_config(self.job.repo)

    def reply(self, text: str, conversation: bool = False) -> int | None:
        """Answer the command comment (in its thread, or in the conversation; always in
        the conversation with ``conversation``).

        Under the pull request's lock, reviewbot's markers are read again first: if
        another job answered the comment meanwhile, :class:`AlreadyAnswered` is raised;
        a permission-denied note (its marker in ``text``) the user already got on
        this pull request is not repeated (None).
        """
        job = self.job
        assert job.comment_id is not None and job.comment_type is not None
        body = f"{text}\n\n{reply_marker(job.comment_id)}"
        with self.locks.hold(job.repo, job.pr_number):
            fresh = self.gh.markers(job.repo, job.pr_number, conversation=True)
            if job.comment_id in fresh.replies:
                raise AlreadyAnswered(job.comment_id)
            if parse_markers(body).denied & fresh.denied:
                return None
            where = "issue" if conversation else job.comment_type
            return self.gh.reply(job.repo, job.pr_number, where, job.comment_id, body)

    def post_review(self, review: Review, kind: str, max_comments: int) -> int:
        """Post ``review`` as the answer to the command, under the pull request's lock.

        The findings reviewbot posted so far are read again just before posting
        (none is posted twice); :class:`AlreadyAnswered` if another job answered the
        comment meanwhile.
        """
        job = self.job
        assert job.comment_id is not None
        with self.locks.hold(job.repo, job.pr_number):
            fresh = self.gh.markers(job.repo, job.pr_number, conversation=True)
            if job.comment_id in fresh.replies:
                raise AlreadyAnswered(job.comment_id)
            payload = build_review_payload(
                review, kind, self.head, fresh.findings, max_comments, job.comment_id
            )
            assert payload is not None  # a requested kind always posts
            return self.gh.post_review(job.repo, job.pr_number, payload)


Handler = Callable[[CommandContext], Outcome]
#: Command name → handler, filled by :func:`handles`; exactly the commands of the table.
HANDLERS: dict[str, Handler] = {}


def handles(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of command ``name``."""
    if name not in COMMANDS:
        raise ValueError(f"/{name} is not in the command table (reviewbot.jobs.commands)")

    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler

    return register


@handles("pause")
def pause(ctx: CommandContext) -> Outcome:
    """/pause: no automatic reviews of this pull request until /resume."""
    return _set_automatic(
        ctx,
        "paused",
        "Automatic reviews of this pull request are paused. Commands still work; "
        "`/resume` turns them back on.",
    )


@handles("ignore")
def ignore(ctx: CommandContext) -> Outcome:
    """/ignore: this pull request is never reviewed automatically (commands still work)."""
    return _set_automatic(
        ctx,
        "ignored",
        "reviewbot will not review this pull request automatically. Commands still work; "
        "`/resume` undoes this.",
    )


@handles("resume")
def resume(ctx: CommandContext) -> Outcome:
    """/resume: automatic reviews again, after /pause or /ignore."""
    return _set_automatic(
        ctx, "active", "Automatic reviews of this pull request are on: the next push is reviewed."
    )


def _set_automatic(ctx: CommandContext, state: str, text: str) -> Outcome:
    """Answer in the conversation with ``state``'s marker: reviewbot's last state marker
    on the pull request decides whether automatic reviews run (it survives restarts)."""
    reply_id = ctx.reply(f"{text}\n\n{state_marker(state)}", conversation=True)
    return Outcome("answered", reply_id)


@handles("resolve")
def resolve(ctx: CommandContext) -> Outcome:
    """/resolve: resolve every unresolved thread that reviewbot started (no one else's)."""
    job = ctx.job
    comments = ctx.gh.review_comments(job.repo, job.pr_number)
    ours = {c.id for c in comments if c.by_reviewbot and c.in_reply_to is None}
    threads = [
        t
        for t in ctx.gh.review_threads(job.repo, job.pr_number)
        if t.root_id in ours and not t.resolved and t.node_id
    ]
    for thread in threads:
        ctx.gh.resolve_thread(job.repo, thread.node_id)
    if threads:
        text = f"Resolved {len(threads)} reviewbot thread{'s' if len(threads) != 1 else ''}."
    else:
        text = "There is no unresolved reviewbot thread on this pull request."
    return Outcome("answered", ctx.reply(text))


@handles("describe")
def describe(ctx: CommandContext) -> Outcome:
    """/describe: what the pull request changes, per file then overall; a comment, or
    reviewbot's section of the pull request's body (``describe = "body"``)."""
    job = ctx.job
    config = ctx.config()
    engine = ctx.engines(config.adapter)
    text = description_text(ctx.gh, job.repo, job.pr_number, engine)
    if config.describe == "body":
        write_into_body(ctx.gh, job.repo, job.pr_number, text, ctx.locks)
        answer = (
            "Wrote the description into the pull request's body (reviewbot's own section; "
            "the rest of the body is untouched)."
        )
        return Outcome("answered", ctx.reply(answer))
    return Outcome("answered", ctx.reply(f"{text}\n\n{DESCRIPTION_MARKER}"))


@handles("help")
def help_(ctx: CommandContext) -> Outcome:
    """/help (and unknown commands): the commands and the effective configuration."""
    try:
        config, error = ctx.gh.repo_config(ctx.job.repo), ""
    except RepoConfigError as e:
        config, error = RepoConfig(), str(e)
    unknown = None if ctx.command.known else ctx.command.name
    summary = config.to_toml_summary(ctx.review_drafts)
    rules = suppression_sentence(ctx.store, ctx.job.repo, config)
    reply_id = ctx.reply(help_text(summary, unknown, error, rules))
    return Outcome("answered", reply_id)


@handles("review")
def review(ctx: CommandContext) -> Outcome:
    """A full review now (no interdiff); the review itself answers the comment."""
    job = replace(ctx.job, kind="review")
    outcome = run_review_job(
        job,
        ctx.gh,
        ctx.engines,
        ctx.review_drafts,
        reply_to=job.comment_id,
        locks=ctx.locks,
        defaults=ctx.defaults,
        store=ctx.store,
    )
    if outcome.status in ("posted", "already-answered"):
        return outcome
    if outcome.status == "failed":
        raise CommandError(outcome.detail or "the review failed")
    if outcome.status == "already-reviewed":
        ctx.reply(f"`{ctx.head[:7]}` was already reviewed on request; nothing changed since.")
    elif outcome.status == "superseded":
        ctx.reply(f"The pull request moved on to `{outcome.detail[:7]}`; ask again.")
    else:
        ctx.reply(f"Not reviewed: {outcome.detail or outcome.status}.")
    return outcome


@handles("revise")
def revise(ctx: CommandContext) -> Outcome:
    """/revise: in a review thread, a suggestion as a reply; in the conversation, one
    review revising every unresolved reviewbot finding."""
    config = ctx.config()
    if ctx.job.comment_type == "review":
        return _revise_thread(ctx, config)
    return _revise_findings(ctx, config)


def _history(thread: list[CommentInfo], before: int) -> list[ThreadComment]:
    """The thread's comments before the command: reviewbot's own are the Assistant's turns
    (another bot's are someone else's)."""
    return [ThreadComment(c.id, c.author, c.body, c.by_reviewbot) for c in thread if c.id < before]


def _thread_lines(root: CommentInfo) -> tuple[int, int]:
    if root.line is None or root.path is None:
        raise CommandError("this thread's lines are no longer in the diff (outdated thread)")
    if root.side == "LEFT":
        raise CommandError(
            "this thread is on removed lines: there is nothing to revise at the head"
        )
    return (root.start_line or root.line), root.line


def _revise_thread(ctx: CommandContext, config: RepoConfig) -> Outcome:
    """/revise in a review thread: a suggestion on the thread's lines, as a reply."""
    job = ctx.job
    assert job.comment_id is not None
    thread = ctx.gh.review_thread(job.repo, job.pr_number, job.comment_id)
    root = thread[0]
    start, end = _thread_lines(root)
    assert root.path is not None
    text = ctx.gh.file_text(job.repo, root.path, ctx.head)
    unit = thread_unit(root.path, text, start, end)
    critique = revise_comment(_history(thread, job.comment_id), ctx.command.args)
    if not critique:
        raise CommandError("say what to change: `/revise <instructions>`")
    engine = ctx.engines(config.adapter)
    options = ctx.options(config)
    (prompt,) = revise_prompts([Finding(unit, critique)], engine.renderer, options)
    (completion,) = engine.generate([prompt])
    reply = revision_reply(
        unit,
        completion,
        options.min_suggestion_similarity,
        file_text=text,
        unparsable=options.unparsable,
        critique=critique,
    )
    return Outcome("answered", ctx.reply(reply))


def _unit_for(plan_units: tuple[ReviewUnit, ...], c: CommentInfo) -> ReviewUnit | None:
    if c.line is None:
        return None
    first = c.start_line or c.line
    for u in plan_units:
        same_side = u.path == c.path and u.side == (c.side or "RIGHT")
        if same_side and u.start_line <= first and c.line <= u.end_line:
            return u
    return None


def _revise_findings(ctx: CommandContext, config: RepoConfig) -> Outcome:
    """/revise in the conversation: one review revising every unresolved reviewbot finding."""
    job = ctx.job
    comments = ctx.gh.review_comments(job.repo, job.pr_number)
    open_threads = ctx.gh.unresolved_threads(job.repo, job.pr_number)
    roots = [
        c
        for c in comments
        if c.by_reviewbot and c.in_reply_to is None and c.id in open_threads
        if parse_markers(c.body).findings
    ]
    plan = plan_diff(ctx.gh.pull_diff(job.repo, job.pr_number), config.plan_limits())
    targets: list[tuple[Finding, str]] = []
    for root in roots:
        unit = _unit_for(plan.units, root)
        if unit is None:
            continue
        replies = [c for c in comments if c.in_reply_to == root.id]
        thread = [ThreadComment(root.id, root.author, root.body, True)] + [
            ThreadComment(c.id, c.author, c.body, c.by_reviewbot) for c in replies
        ]
        finding = Finding(unit, finding_critique(root.body))
        targets.append((finding, revise_comment(thread, ctx.command.args)))
    if not targets:
        ctx.reply("There are no unresolved reviewbot findings on the current diff to revise.")
        return Outcome("answered")
    engine = ctx.engines(config.adapter)
    score, options = rating(engine, replace(ctx.options(config), revise=True))
    # The repository's confidence threshold holds here too: each finding is rated
    # against the critique prompt of its unit, and one below it is counted, not revised.
    findings = [f for f, _ in targets]
    prompts = critique_prompts([f.unit for f in findings], engine.renderer, options)
    scored = rated(findings, prompts, score) if score else findings
    unsure = [below_confidence(f) for f in scored if not sure_enough(f, options.min_confidence)]
    targets = [
        (f, critique)
        for f, (_, critique) in zip(scored, targets, strict=True)
        if sure_enough(f, options.min_confidence)
    ]
    if not targets:
        ctx.reply(
            f"The {len(unsure)} unresolved reviewbot finding(s) on the current diff are below "
            f"this repository's confidence threshold ({options.min_confidence:g}): "
            "nothing to revise."
        )
        return Outcome("answered")
    asked = [replace(f, critique=critique) for f, critique in targets]
    prompts = revise_prompts(asked, engine.renderer, options)
    read = head_reader(ctx.gh, job.repo, ctx.head)
    revised = [
        attach_revision(f, completion, options, read)
        for (f, _), completion in zip(targets, engine.generate(prompts), strict=True)
    ]
    review = Review(
        units=tuple(f.unit for f in revised),
        comments=tuple(
            _revision_comment(f) for f in revised if f.revision and f.revision_dropped is None
        ),
        summary=None,
        skipped=(),
        dropped=(*unsure, *not_posted(revised)),
        checks=tuple(f.syntax for f in revised if f.syntax is not None),
    )
    return Outcome("posted", ctx.post_review(review, "revise", config.max_comments))


def _revision_comment(finding: Finding) -> Comment:
    """The finding's revision as a comment; its fingerprint is the revision's own
    (the finding's is posted already), so the same revision is never posted twice."""
    c = to_comment(finding, revise=True)
    code = anchored_code(finding.unit, c.start_line or c.line, c.line)
    revision = c.suggestion or finding.revision
    key = fingerprint(c.path, f"revision {finding.critique}", revision, code)
    return replace(c, fingerprint=key)


@handles("summary")
def summary(ctx: CommandContext) -> Outcome:
    """/summary: critique → revise → summarise the PR's units; post the summary.

    Once per head, like /review: the summary carries a ``summary`` marker for its
    head, and a later /summary at the same head is answered without the model.
    """
    job = ctx.job
    if any((m.kind, m.head_sha) == ("summary", ctx.head) for m in ctx.posted.reviews):
        reply_id = ctx.reply(f"`{ctx.head[:7]}` was already summarised; nothing changed since.")
        return Outcome("already-summarised", reply_id)
    config = ctx.config()
    plan = plan_diff(ctx.gh.pull_diff(job.repo, job.pr_number), config.plan_limits())
    engine = ctx.engines(config.adapter)
    score, options = rating(engine, replace(ctx.options(config), revise=True, summary=True))
    review = review_plan(plan, engine.generate, engine.renderer, options, score=score)
    revised_units = sum(1 for c in review.comments if c.suggestion is not None)
    text = summary_reply(review.summary, ctx.head, revised_units)
    marker = review_marker(
        "summary", ctx.head, review_fingerprint(c.fingerprint for c in review.comments)
    )
    return Outcome("answered", ctx.reply(f"{text}\n\n{marker}"))


@handles("ask")
def ask(ctx: CommandContext) -> Outcome:
    """/ask: answer with the thread (or earlier /ask exchanges) as dialogue history."""
    job = ctx.job
    config = ctx.config()
    assert job.comment_id is not None
    question = ctx.command.args
    if not question:
        raise CommandError("ask a question: `/ask <question>`")
    options = ctx.options(config)
    if job.comment_type == "review":
        thread = ctx.gh.review_thread(job.repo, job.pr_number, job.comment_id)
        root = thread[0]
        code = hunk_original(root.diff_hunk, root.path or "", options.changed_lines, root.side)
        history = _history(thread, job.comment_id)
    else:
        code = pr_context(ctx.gh.pull_diff(job.repo, job.pr_number))
        history = _conversation_history(
            ctx.gh.issue_comments(job.repo, job.pr_number), job.comment_id
        )
    engine = ctx.engines(config.adapter)
    turns = ask_turns(code, history, question, options.response_language)
    prompt = dialogue_renderer(engine.renderer).dialogue(turns)
    (completion,) = engine.generate([prompt])
    answer = clean_answer(completion)
    if not answer:
        raise CommandError("the model produced no answer; try rephrasing the question")
    text = answer if job.comment_type == "review" else f"{quote(question)}\n\n{answer}"
    return Outcome("answered", ctx.reply(text))


def _conversation_history(comments: list[CommentInfo], before: int) -> list[ThreadComment]:
    """Earlier /ask questions in the conversation and reviewbot's answers to them."""
    asks: dict[int, ThreadComment] = {}
    answers: dict[int, ThreadComment] = {}
    for c in comments:
        if c.id >= before:
            continue
        if c.by_reviewbot:
            for answered in parse_markers(c.body).replies:
                answers[answered] = ThreadComment(c.id, c.author, c.body, True)
        else:
            cmd = parse_command(c.body)
            if cmd is not None and cmd.name == "ask" and cmd.args:
                asks[c.id] = ThreadComment(c.id, c.author, c.body, False)
    history: list[ThreadComment] = []
    for ask_id, ask in sorted(asks.items()):
        if ask_id in answers:
            history += [ask, answers[ask_id]]
    return history


if HANDLERS.keys() != COMMANDS.keys():  # pragma: no cover - a programming error
    raise ImportError(f"commands without a handler: {sorted(COMMANDS.keys() - HANDLERS.keys())}")
