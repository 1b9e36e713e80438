"""``reviewbot doctor``: checks a deployment's settings, services and model, and explains."""
