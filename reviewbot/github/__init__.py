"""The GitHub edge: webhook events (sans I/O), markers and review payloads (pure),
conversation texts (pure), and the PyGithub client and App auth."""
