"""``reviewbot setup``: register the GitHub App through GitHub's manifest flow.

:mod:`.manifest` holds the flow's rules without I/O (URLs, the manifest, GitHub's
answer, the ``.env`` text); :mod:`.app` serves the local page, exchanges the code
GitHub hands back and writes the settings.
"""
