"""Prompt templates, installed as the package data ``reviewbot.templates``.

The text lives in the TOML files beside this module and nowhere else; read it
through :mod:`reviewbot.review.prompts`.
"""
