"""The pure review core: diff → review units → prompts → findings → Review (no I/O)."""
