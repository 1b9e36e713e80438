"""Parsing ``.github/reviewbot.toml``: defaults, every key, every error."""

from __future__ import annotations

import pytest

from reviewbot.settings.defaults import (
    DEFAULT_EXCLUDES,
    MAX_COMMENTS_LIMIT,
    MAX_EXTRA_INSTRUCTIONS_CHARS,
    MAX_REPO_CONFIG_BYTES,
    MAX_REPO_GLOBS,
    PROFILES,
    REPO_CONFIG_PATH,
    PlanLimits,
    ReviewOptions,
)
from reviewbot.settings.repo import RepoConfig, RepoConfigError, parse_repo_config
from reviewbot.settings.server import Settings, SettingsError

FULL = """
include = ["src/*", "*.py"]
exclude = ["docs/*"]
max_comments = 7
revise = true
summary = true
drafts = true
extra_instructions = "  We target Python 3.9.  "
adapter = "python-reviews"
deletions = "left"
"""


def test_no_file_and_empty_file_give_the_defaults() -> None:
    defaults = RepoConfig()
    assert parse_repo_config(None) == defaults
    assert parse_repo_config("") == defaults
    assert parse_repo_config("# only a comment\n") == defaults
    options = ReviewOptions()
    assert defaults.max_comments == options.max_comments
    assert (defaults.revise, defaults.summary) == (options.revise, options.summary)
    assert defaults.drafts is None  # unset: the server decides
    assert defaults.reviews_drafts() is False and defaults.reviews_drafts(True) is True
    assert defaults.deletions == PlanLimits().deletions
    assert (defaults.include, defaults.exclude, defaults.adapter) == ((), (), None)


def test_every_key_is_parsed() -> None:
    cfg = parse_repo_config(FULL)
    assert cfg == RepoConfig(
        include=("src/*", "*.py"),
        exclude=("docs/*",),
        max_comments=7,
        revise=True,
        summary=True,
        drafts=True,
        extra_instructions="We target Python 3.9.",
        adapter="python-reviews",
        deletions="left",
    )


def test_the_repository_overrides_the_servers_draft_default() -> None:
    """Three layers: built-in default (no drafts) < server env < the repository's file."""
    assert parse_repo_config("drafts = false").reviews_drafts(server_default=True) is False
    assert parse_repo_config("drafts = true").reviews_drafts(server_default=False) is True
    assert parse_repo_config("").reviews_drafts(server_default=True) is True
    summary = RepoConfig().to_toml_summary(server_drafts=True)
    assert "# drafts = true  (unset: the server's default)" in summary


def test_plan_limits_add_repo_excludes_to_the_builtin_ones() -> None:
    limits = parse_repo_config(FULL).plan_limits()
    assert limits.exclude_globs == (*DEFAULT_EXCLUDES, "docs/*")
    assert limits.include_globs == ("src/*", "*.py")
    assert limits.deletions == "left"
    assert limits.max_units == PlanLimits().max_units
    base = PlanLimits(max_units=3, exclude_globs=("x",))
    assert parse_repo_config(None).plan_limits(base) == PlanLimits(
        max_units=3, exclude_globs=("x",)
    )


def test_review_options_take_the_repo_switches() -> None:
    options = parse_repo_config(FULL).review_options()
    assert (options.revise, options.summary, options.max_comments) == (True, True, 7)
    assert options.noise == ReviewOptions().noise


def test_summary_lists_the_effective_config_and_is_valid_toml() -> None:
    cfg = parse_repo_config(FULL)
    text = cfg.to_toml_summary()
    assert 'include = ["src/*", "*.py"]' in text
    assert "max_comments = 7" in text
    assert f"plus {len(DEFAULT_EXCLUDES)} built-in" in text
    assert parse_repo_config(text) == cfg
    assert parse_repo_config(RepoConfig().to_toml_summary()) == RepoConfig()
    tricky = RepoConfig(extra_instructions='Say "hi"\\ then\nnew line\ttab')
    assert parse_repo_config(tricky.to_toml_summary()) == tricky


def _error(text: str) -> RepoConfigError:
    with pytest.raises(RepoConfigError) as info:
        parse_repo_config(text)
    assert str(info.value).startswith(f"{REPO_CONFIG_PATH}: ")
    return info.value


def test_invalid_toml_names_the_position() -> None:
    err = _error("max_comments = \n")
    assert "not valid TOML" in str(err)
    assert "line 1" in str(err)
    assert err.key is None


def test_unknown_key_is_named_with_a_suggestion() -> None:
    err = _error("max_comment = 3\n")
    assert err.key == "max_comment"
    assert "unknown key 'max_comment'" in str(err)
    assert "did you mean 'max_comments'" in str(err)


def test_tables_are_unknown_keys() -> None:
    err = _error("[reviewbot]\nmax_comments = 3\n")
    assert err.key == "reviewbot"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('max_comments = "ten"', "max_comments", "must be an integer"),
        ("max_comments = true", "max_comments", "must be an integer"),
        ("max_comments = 2.5", "max_comments", "must be an integer"),
        ("max_comments = -1", "max_comments", f"between 0 and {MAX_COMMENTS_LIMIT}"),
        (f"max_comments = {MAX_COMMENTS_LIMIT + 1}", "max_comments", "between 0"),
        ('revise = "yes"', "revise", "must be true or false"),
        ("summary = 1", "summary", "must be true or false"),
        ("drafts = []", "drafts", "must be true or false"),
        ('include = "src/*"', "include", "must be a list of path globs"),
        ("exclude = [1]", "exclude", "exclude[0] must be a non-empty string"),
        ('include = ["ok", " "]', "include", "include[1] must be a non-empty string"),
        ("extra_instructions = 3", "extra_instructions", "must be a string"),
        ("adapter = 3", "adapter", "must be a string"),
        ('adapter = "../../etc"', "adapter", "not a path"),
        ('adapter = "a/b"', "adapter", "not a path"),
        ('deletions = "right"', "deletions", "must be 'skip' or 'left'"),
        ("deletions = false", "deletions", "must be 'skip' or 'left'"),
    ],
)
def test_wrong_types_and_values_name_the_key(text: str, key: str, words: str) -> None:
    err = _error(text + "\n")
    assert err.key == key
    assert key in str(err)
    assert words in str(err)


def test_limits_on_sizes() -> None:
    globs = ", ".join(f'"d{i}/*"' for i in range(MAX_REPO_GLOBS + 1))
    assert _error(f"exclude = [{globs}]").key == "exclude"
    long = "x" * (MAX_EXTRA_INSTRUCTIONS_CHARS + 1)
    err = _error(f'extra_instructions = "{long}"')
    assert err.key == "extra_instructions"
    assert f"at most {MAX_EXTRA_INSTRUCTIONS_CHARS}" in str(err)
    huge = "# " + "x" * MAX_REPO_CONFIG_BYTES
    assert "larger than" in str(_error(huge))


def test_empty_adapter_means_the_default_model() -> None:
    assert parse_repo_config('adapter = ""').adapter is None


def test_error_is_marked_safe_to_show() -> None:
    assert RepoConfigError("x").user_facing is True


SIGNAL = """
profile = "assertive"
min_confidence = 0.7
unparsable_suggestions = "drop"
changed_lines = false
priority = ["src/core/**"]
path_instructions = [
  { path = "src/api/**", instructions = "Check input validation." },
  { path = "*.sql", instructions = "Flag unbounded queries." },
]
response_language = "pt-BR"
"""


def test_the_review_signal_keys_are_parsed_and_reach_the_options() -> None:
    cfg = parse_repo_config(SIGNAL)
    assert cfg.profile == "assertive" and cfg.min_confidence == 0.7
    assert cfg.confidence_threshold == 0.7  # min_confidence wins over the profile
    options = cfg.review_options()
    assert options.min_confidence == 0.7 and options.unparsable == "drop"
    assert options.changed_lines is False and options.response_language == "pt-BR"
    assert options.path_instructions == (
        ("src/api/**", "Check input validation."),
        ("*.sql", "Flag unbounded queries."),
    )
    assert cfg.plan_limits().priority_globs == ("src/core/**",)
    assert parse_repo_config(cfg.to_toml_summary()) == cfg


def test_profiles_map_to_their_thresholds_and_unset_keys_follow_the_server() -> None:
    assert RepoConfig().confidence_threshold is None  # unset: the server's profile
    assert RepoConfig().review_options().min_confidence == PROFILES["chill"]
    assert parse_repo_config('profile = "assertive"').confidence_threshold == PROFILES["assertive"]
    assert PROFILES["chill"] > PROFILES["assertive"]
    server = Settings.from_env(
        {"REVIEWBOT_CHANGED_LINES": "false", "REVIEWBOT_PROFILE": "assertive"}
    ).review_defaults()
    assert RepoConfig().review_options(server).changed_lines is False
    assert RepoConfig().review_options(server).min_confidence == PROFILES["assertive"]
    chill = parse_repo_config('profile = "chill"').review_options(server)
    assert chill.min_confidence == PROFILES["chill"]  # the repository's say wins
    assert RepoConfig().review_options().changed_lines is True
    with pytest.raises(SettingsError, match="REVIEWBOT_PROFILE"):
        Settings.from_env({"REVIEWBOT_PROFILE": "grumpy"})
    assert parse_repo_config(RepoConfig().to_toml_summary()) == RepoConfig()


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('profile = "loud"', "profile", "must be 'chill' or 'assertive'"),
        ("min_confidence = 2", "min_confidence", "between 0 and 1"),
        ('min_confidence = "high"', "min_confidence", "must be a number"),
        ('unparsable_suggestions = "keep"', "unparsable_suggestions", "'plain' or 'drop'"),
        ('path_instructions = [{ path = "a" }]', "path_instructions", "exactly the keys"),
        ('path_instructions = "src/**"', "path_instructions", "must be a list"),
        ('response_language = "<!-- x -->"', "response_language", "language code or name"),
        ("priority = [1]", "priority", "non-empty string glob"),
    ],
)
def test_bad_signal_keys_name_the_key(text: str, key: str, message: str) -> None:
    with pytest.raises(RepoConfigError, match=message) as err:
        parse_repo_config(text)
    assert err.value.key == key
