"""Run one slash-command job: /review, /revise, /summary, /ask, /help (imperative shell).

Every command comment gets exactly one answer, marked with its reply marker
(``<!-- reviewbot:reply:{comment id} -->``): a rerun of the same job (a crash, a
redelivery) finds the marker and answers nothing twice. The comment's 👀
reaction (added by the web server, or here) becomes 🚀 when the job is done,
😕 plus a reply saying what went wrong when it failed. Transient GitHub
errors propagate so the queue retries the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from reviewbot.commands import (
    Command,
    CommandError,
    ThreadComment,
    ask_turns,
    clean_answer,
    denied_text,
    dialogue_renderer,
    failure_text,
    finding_critique,
    help_text,
    parse_command,
    pr_context,
    quote,
    revise_comment,
    revision_reply,
    summary_reply,
    thread_unit,
)
from reviewbot.config import (
    COMMAND_MENTION,
    COMMAND_ROLES,
    REACTION_DONE,
    REACTION_FAILED,
    REACTION_RECEIVED,
)
from reviewbot.diffplan import plan_diff
from reviewbot.findings import Comment, Finding, Review, fingerprint
from reviewbot.github_client import (
    CommentInfo,
    GitHubClient,
    GitHubError,
    PullInfo,
    TransientGitHubError,
)
from reviewbot.github_review import (
    Markers,
    build_review_payload,
    denied_marker,
    parse_markers,
    reply_marker,
)
from reviewbot.jobs import Job
from reviewbot.pipeline import attach_revision, review_plan, to_comment
from reviewbot.repo_config import RepoConfig, RepoConfigError
from reviewbot.service import EngineProvider, Outcome, run_review_job
from reviewbot.units import DiffError, ReviewUnit

log = logging.getLogger(__name__)

#: Errors whose message is written for the user (shown in the failure reply).
_USER_FACING = (CommandError, GitHubError, RepoConfigError, DiffError)


@dataclass(frozen=True)
class _Context:
    job: Job
    command: Command
    gh: GitHubClient
    engines: EngineProvider
    pull: PullInfo
    posted: Markers
    received: int
    """The id of the app's 👀 reaction on the command comment."""

    @property
    def head(self) -> str:
        return self.pull.head_sha

    def reply(self, text: str) -> int:
        """Answer the command comment (in its thread, or in the conversation)."""
        job = self.job
        assert job.comment_id is not None and job.comment_type is not None
        body = f"{text}\n\n{reply_marker(job.comment_id)}"
        return self.gh.reply(job.repo, job.pr_number, job.comment_type, job.comment_id, body)

    def finish(self, reaction: str | None) -> None:
        """Replace 👀 with ``reaction`` (None: just take 👀 back)."""
        job = self.job
        assert job.comment_id is not None and job.comment_type is not None
        self.gh.remove_reaction(job.repo, job.comment_type, job.comment_id, self.received)
        if reaction is not None:
            self.gh.add_reaction(job.repo, job.comment_type, job.comment_id, reaction)


def run_command_job(
    job: Job, gh: GitHubClient, engines: EngineProvider, review_drafts: bool = False
) -> Outcome:
    """Carry out the command of ``job`` and answer it once; idempotent."""
    if not job.interactive or job.comment_id is None or job.comment_type is None:
        raise ValueError(f"run_command_job cannot run a {job.kind!r} job")
    command = parse_command(job.args, COMMAND_MENTION) or Command("help")
    where = (job.repo, job.comment_type, job.comment_id)
    posted = gh.markers(job.repo, job.pr_number, conversation=True)
    if job.comment_id in posted.replies:
        log.info("%s: comment %d was already answered", job.key, job.comment_id)
        gh.swap_reaction(*where, REACTION_RECEIVED, REACTION_DONE)
        return Outcome("already-answered")
    received = gh.add_reaction(*where, REACTION_RECEIVED)  # the web's 👀, or a new one
    pull = gh.pull(job.repo, job.pr_number)
    ctx = _Context(
        replace(job, head_sha=pull.head_sha), command, gh, engines, pull, posted, received
    )
    try:
        if command.uses_model and not _allowed(ctx):
            return _deny(ctx)
        outcome = _run(ctx, review_drafts)
    except TransientGitHubError:
        raise
    except Exception as e:  # answered on the PR, never dropped
        reason = str(e) if isinstance(e, _USER_FACING) else "an internal error (see the logs)"
        log.warning("%s failed: %s", job.key, reason, exc_info=not isinstance(e, _USER_FACING))
        ctx.reply(failure_text(command.name, reason))
        ctx.finish(REACTION_FAILED)
        return Outcome("failed", detail=reason)
    ctx.finish(REACTION_DONE)
    return outcome


def give_up(job: Job, gh: GitHubClient, error: Exception) -> None:
    """After the last retry: tell the commenter the command could not run (best effort).

    GitHub failed every attempt, so this may fail too; then only the log says it.
    """
    if job.comment_id is None or job.comment_type is None:
        return
    command = parse_command(job.args, COMMAND_MENTION) or Command("help")
    reason = f"GitHub kept failing ({error}); please ask again later"
    body = f"{failure_text(command.name, reason)}\n\n{reply_marker(job.comment_id)}"
    where = (job.repo, job.comment_type, job.comment_id)
    try:
        gh.reply(job.repo, job.pr_number, job.comment_type, job.comment_id, body)
        gh.swap_reaction(*where, REACTION_RECEIVED, REACTION_FAILED)
    except GitHubError as e:
        log.error("%s: could not report that it gave up: %s", job.key, e)


def _allowed(ctx: _Context) -> bool:
    sender = ctx.job.sender
    return bool(sender) and ctx.gh.role(ctx.job.repo, sender) in COMMAND_ROLES


def _deny(ctx: _Context) -> Outcome:
    """One polite reply per user and PR (unless the repo says ``unauthorized = "ignore"``)."""
    sender = ctx.job.sender or "there"
    try:
        quiet = ctx.gh.repo_config(ctx.job.repo).unauthorized == "ignore"
    except RepoConfigError:
        quiet = False
    if not quiet and sender not in ctx.posted.denied:
        ctx.reply(f"{denied_text(sender, ctx.command.name)}\n\n{denied_marker(sender)}")
    log.info("%s: %s may not run /%s", ctx.job.key, sender, ctx.command.name)
    ctx.finish(None)
    return Outcome("denied", detail=sender)


def _run(ctx: _Context, review_drafts: bool) -> Outcome:
    if ctx.pull.state != "open":
        raise CommandError(f"the pull request is {ctx.pull.state}")
    name = ctx.command.kind
    if name == "help":
        return _help(ctx)
    if name == "review":
        return _review(ctx, review_drafts)
    config = ctx.gh.repo_config(ctx.job.repo)
    if name == "revise":
        if ctx.job.comment_type == "review":
            return _revise_thread(ctx, config)
        return _revise_findings(ctx, config)
    if name == "summary":
        return _summary(ctx, config)
    return _ask(ctx, config)


def _help(ctx: _Context) -> Outcome:
    try:
        config, error = ctx.gh.repo_config(ctx.job.repo), ""
    except RepoConfigError as e:
        config, error = RepoConfig(), str(e)
    unknown = None if ctx.command.known else ctx.command.name
    reply_id = ctx.reply(help_text(config.to_toml_summary(), unknown, error))
    return Outcome("answered", reply_id)


def _review(ctx: _Context, review_drafts: bool) -> Outcome:
    """A full review now (no interdiff); the review itself answers the comment."""
    job = replace(ctx.job, kind="review")
    outcome = run_review_job(job, ctx.gh, ctx.engines, review_drafts, reply_to=job.comment_id)
    if outcome.status == "posted":
        return outcome
    if outcome.status == "failed":
        raise CommandError(f"the review failed: {outcome.detail}")
    if outcome.status == "already-reviewed":
        ctx.reply(f"`{ctx.head[:7]}` was already reviewed on request; nothing changed since.")
    elif outcome.status == "superseded":
        ctx.reply(f"The pull request moved on to `{outcome.detail[:7]}`; ask again.")
    else:
        ctx.reply(f"Not reviewed: {outcome.detail or outcome.status}.")
    return outcome


def _history(thread: list[CommentInfo], before: int) -> list[ThreadComment]:
    """The thread's comments before the command: reviewbot's are the Assistant's turns."""
    return [ThreadComment(c.id, c.author, c.body, c.by_bot) for c in thread if c.id < before]


def _thread_lines(root: CommentInfo) -> tuple[int, int]:
    if root.line is None or root.path is None:
        raise CommandError("this thread's lines are no longer in the diff (outdated thread)")
    if root.side == "LEFT":
        raise CommandError(
            "this thread is on removed lines: there is nothing to revise at the head"
        )
    return (root.start_line or root.line), root.line


def _revise_thread(ctx: _Context, config: RepoConfig) -> Outcome:
    """/revise in a review thread: a suggestion on the thread's lines, as a reply."""
    job = ctx.job
    assert job.comment_id is not None
    thread = ctx.gh.review_thread(job.repo, job.pr_number, job.comment_id)
    root = thread[0]
    start, end = _thread_lines(root)
    assert root.path is not None
    unit = thread_unit(root.path, ctx.gh.file_text(job.repo, root.path, ctx.head), start, end)
    critique = revise_comment(_history(thread, job.comment_id), ctx.command.args)
    if not critique:
        raise CommandError("say what to change: `/revise <instructions>`")
    engine = ctx.engines(config.adapter)
    prompt = engine.renderer.task(
        "revise", config.extra_instructions, ORIGINAL=unit.original, CRITIQUE=critique
    )
    (completion,) = engine.generate([prompt])
    options = config.review_options()
    reply_id = ctx.reply(revision_reply(unit, completion, options.min_suggestion_similarity))
    return Outcome("answered", reply_id)


def _unit_for(plan_units: tuple[ReviewUnit, ...], c: CommentInfo) -> ReviewUnit | None:
    if c.line is None:
        return None
    first = c.start_line or c.line
    for u in plan_units:
        same_side = u.path == c.path and u.side == (c.side or "RIGHT")
        if same_side and u.start_line <= first and c.line <= u.end_line:
            return u
    return None


def _revise_findings(ctx: _Context, config: RepoConfig) -> Outcome:
    """/revise in the conversation: one review revising every unresolved reviewbot finding."""
    job = ctx.job
    comments = ctx.gh.review_comments(job.repo, job.pr_number)
    open_threads = ctx.gh.unresolved_threads(job.repo, job.pr_number)
    roots = [
        c
        for c in comments
        if c.by_bot and c.in_reply_to is None and c.id in open_threads
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
            ThreadComment(c.id, c.author, c.body, c.by_bot) for c in replies
        ]
        finding = Finding(unit, finding_critique(root.body))
        targets.append((finding, revise_comment(thread, ctx.command.args)))
    if not targets:
        ctx.reply("There are no unresolved reviewbot findings on the current diff to revise.")
        return Outcome("answered")
    engine = ctx.engines(config.adapter)
    prompts = [
        engine.renderer.task(
            "revise", config.extra_instructions, ORIGINAL=f.unit.original, CRITIQUE=critique
        )
        for f, critique in targets
    ]
    options = replace(config.review_options(), revise=True)
    revised = [
        attach_revision(f, completion, options)
        for (f, _), completion in zip(targets, engine.generate(prompts), strict=True)
    ]
    review = Review(
        units=tuple(f.unit for f in revised),
        comments=tuple(_revision_comment(f) for f in revised if f.revision),
        summary=None,
        skipped=(),
    )
    payload = build_review_payload(
        review, "revise", ctx.head, ctx.posted.findings, config.max_comments, job.comment_id
    )
    assert payload is not None  # a requested kind always posts
    review_id = ctx.gh.post_review(job.repo, job.pr_number, payload)
    return Outcome("posted", review_id)


def _revision_comment(finding: Finding) -> Comment:
    """The finding's revision as a comment; its fingerprint is the revision's own
    (the finding's is posted already), so the same revision is never posted twice."""
    c = to_comment(finding, revise=True)
    key = fingerprint(c.path, f"revision {finding.critique}", c.suggestion or finding.revision)
    return replace(c, fingerprint=key)


def _summary(ctx: _Context, config: RepoConfig) -> Outcome:
    """/summary: critique → revise → summarise the PR's units; post the summary."""
    job = ctx.job
    plan = plan_diff(ctx.gh.pull_diff(job.repo, job.pr_number), config.plan_limits())
    engine = ctx.engines(config.adapter)
    options = replace(config.review_options(), revise=True, summary=True)
    review = review_plan(plan, engine.generate, engine.renderer, options)
    revised_units = sum(1 for c in review.comments if c.suggestion is not None)
    reply_id = ctx.reply(summary_reply(review.summary, ctx.head, revised_units))
    return Outcome("answered", reply_id)


def _ask(ctx: _Context, config: RepoConfig) -> Outcome:
    """/ask: answer with the thread (or earlier /ask exchanges) as dialogue history."""
    job = ctx.job
    assert job.comment_id is not None
    question = ctx.command.args
    if not question:
        raise CommandError("ask a question: `/ask <question>`")
    if job.comment_type == "review":
        thread = ctx.gh.review_thread(job.repo, job.pr_number, job.comment_id)
        code = thread[0].diff_hunk
        history = _history(thread, job.comment_id)
    else:
        code = pr_context(ctx.gh.pull_diff(job.repo, job.pr_number))
        history = _conversation_history(
            ctx.gh.issue_comments(job.repo, job.pr_number), job.comment_id
        )
    engine = ctx.engines(config.adapter)
    prompt = dialogue_renderer(engine.renderer).dialogue(ask_turns(code, history, question))
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
        if c.by_bot:
            for answered in parse_markers(c.body).replies:
                answers[answered] = ThreadComment(c.id, c.author, c.body, True)
        else:
            cmd = parse_command(c.body, COMMAND_MENTION)
            if cmd is not None and cmd.name == "ask" and cmd.args:
                asks[c.id] = ThreadComment(c.id, c.author, c.body, False)
    history: list[ThreadComment] = []
    for ask_id, ask in sorted(asks.items()):
        if ask_id in answers:
            history += [ask, answers[ask_id]]
    return history
