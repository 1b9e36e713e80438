"""reviewbot: a self-hosted, fine-tunable AI code reviewer for GitHub pull requests."""

__version__ = "0.1.0"
