"""The job runners, written against ports (Protocols): review jobs and command jobs."""
