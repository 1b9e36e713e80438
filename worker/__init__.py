"""Celery application and tasks for the GitHub App workers."""
