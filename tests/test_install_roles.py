"""Each role installs what it needs: the web tier without the model stack
(``reviewbot[server]``), workers with it (``[worker]``), training with ``[finetune]``.

The web-only install is played by a Python whose imports of the model stack fail (as
they do where it is not installed): the webhook app still answers a signed delivery
over real HTTP, ``doctor`` says what is missing, and the model commands say which extra
installs it instead of a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import ROOT, WEB_BROKER_DB, WEBHOOKS, redis_url

from reviewbot.settings.defaults import QUEUE_REVIEWS

MODEL_STACK = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "gguf",
    "tokenizers",
    "tree_sitter",
)

#: Runs ``reviewbot.cli.main(argv)`` in a Python where the model stack cannot be imported.
WEB_ONLY = """
import sys
BLOCKED = set(sys.argv[1].split(","))

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from reviewbot.cli import main
sys.exit(main(sys.argv[2:]))
"""


def web_only(*argv: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-c", WEB_ONLY, ",".join(MODEL_STACK), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def requirement_names(reqs: list[str]) -> set[str]:
    names = set()
    for r in reqs:
        name = r.split(";")[0]
        for sep in "<>=![ ":
            name = name.split(sep)[0]
        names.add(name.lower().replace("_", "-"))
    return names


def test_the_base_install_is_the_web_tier_and_the_extras_add_each_role() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = requirement_names(project["dependencies"])
    extras = project["optional-dependencies"]
    stack = {m.replace("_", "-") for m in MODEL_STACK}
    assert not base & stack, f"the web tier would install {sorted(base & stack)}"
    assert {"flask", "gunicorn", "celery", "redis", "pygithub", "python-dotenv"} <= base
    assert "server" in extras
    assert stack <= requirement_names(extras["worker"])
    assert "reviewbot[worker]" in extras["finetune"] and "datasets" in requirement_names(
        extras["finetune"]
    )


#: In the web-only Python: the webhook app from its factory, served over real HTTP on
#: loopback, posted one signed delivery; prints the status.
SERVE_ONE = """
import threading, urllib.request
from werkzeug.serving import make_server
from reviewbot.server.app import create_app_from_env
server = make_server("127.0.0.1", 0, create_app_from_env())
threading.Thread(target=server.serve_forever, daemon=True).start()
request = urllib.request.Request(
    f"http://127.0.0.1:{server.server_port}/webhook", data=BODY, headers=HEADERS, method="POST"
)
with urllib.request.urlopen(request, timeout=30) as response:
    print(response.status)
server.shutdown()
"""


def test_a_web_only_install_serves_webhooks_and_says_what_workers_need(tmp_path: Path) -> None:
    import redis

    secret = "web-only-secret"
    broker = redis.Redis.from_url(redis_url(WEB_BROKER_DB))
    broker.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(REVIEWBOT_WEBHOOK_SECRET=secret, REVIEWBOT_REDIS_URL=redis_url(WEB_BROKER_DB))
    body = (WEBHOOKS / "pull_request.opened.json").read_bytes()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": "web-only-1",
        "X-Hub-Signature-256": "sha256="
        + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }
    blocked = WEB_ONLY.split("from reviewbot.cli")[0]
    script = f"BODY = {body!r}\nHEADERS = {headers!r}\n" + SERVE_ONE
    try:
        proc = subprocess.run(
            [sys.executable, "-c", blocked + script, ",".join(MODEL_STACK)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "202", proc.stdout
        assert broker.llen(QUEUE_REVIEWS) == 1  # the job is on the workers' queue
    finally:
        broker.flushdb()

    doctor = web_only("doctor", env=env)
    assert doctor.returncode == 1
    assert "✗ model: torch is not installed here (a web-only install)" in doctor.stdout
    assert "pip install reviewbot[worker]" in doctor.stdout

    diff = tmp_path / "x.diff"
    diff.write_text("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n")
    review = web_only("review", str(diff), env=env)
    assert review.returncode == 2 and "Traceback" not in review.stderr
    assert "pip install 'reviewbot[worker]'" in review.stderr
    # planning alone needs no model
    dry = web_only("review", str(diff), "--dry-run", "--format", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["units"][0]["path"] == "x.py"
