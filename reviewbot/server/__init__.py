"""The web process: the Flask webhook app, deduplication in Redis, the queue it feeds."""
