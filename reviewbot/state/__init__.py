"""Redis-backed state shared by the web process and the workers: rate limits, per-
installation job caps and token budgets."""
