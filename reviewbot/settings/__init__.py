"""Settings, in three layers (each overrides the one before it):

- :mod:`~reviewbot.settings.defaults`: built-in defaults, limits and choice lists;
- :mod:`~reviewbot.settings.server`: the server's ``REVIEWBOT_*`` environment variables;
- :mod:`~reviewbot.settings.repo`: a repository's ``.github/reviewbot.toml``.
"""
