"""The job vocabulary shared by the webhook and the workers: Job and the command table."""
