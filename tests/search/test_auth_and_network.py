"""A tracking server with basic auth, and what a search exposes of its credentials: nothing,
anywhere. Real `mlflow server --app-name basic-auth`, real local Ray. (What a search's sockets
bind: tests/search/test_loopback.py, in a subprocess without the suite's environment.)"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from remedies.stores import tracking
from tests.conftest import start_mlflow_server
from tests.search.test_faults import EXE, space_file

pytestmark = pytest.mark.slow
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    password = "pw-" + secrets.token_hex(8)
    ini = d / "basic_auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{d}/users.db\n"
        f"admin_username = admin\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        **CLEAN,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    server = start_mlflow_server(d / "server", extra=["--app-name", "basic-auth"], env=env)
    yield server, password
    server.stop()


def run(cwd: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=400
    )


@pytest.mark.parametrize("who", ["wrong", "missing"])
def test_refused_credentials_are_one_line_before_anything_starts(auth_server, tmp_path, who):
    server, password = auth_server
    sp = space_file(tmp_path, "auth", n=1, epochs=2)
    env = dict(CLEAN)
    if who == "wrong":
        env |= {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "not-it"}
    before = listing(tmp_path)
    p = run(tmp_path, ["search", sp.name, "--tracking-uri", server.uri], env)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("remedies: error: --tracking-uri:"), lines
    assert "HTTP 401" in lines[0] and "Ray" not in p.stderr
    assert listing(tmp_path) == before  # no study, no mlflow.db, no ray_results


def test_credentials_work_and_appear_nowhere(auth_server, tmp_path):
    server, password = auth_server
    t0 = time.time()
    # 1. from the environment
    sp = space_file(tmp_path, "auth", n=1, epochs=2)
    env = CLEAN | {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    p = run(
        tmp_path,
        [
            "search",
            sp.name,
            "--name",
            "env",
            "--tracking-uri",
            server.uri,
            "--storage",
            "studies.db",
            "--quiet",
        ],
        env,
    )
    assert p.returncode == 0, p.stderr[-2000:]

    # 2. in the URI (what every socket of a search binds is tests/search/test_loopback.py's,
    # in an environment without the suite's)
    uri = server.uri.replace("http://", f"http://admin:{password}@")
    sp2 = space_file(tmp_path, "auth2", n=1, epochs=2)
    p2 = run(
        tmp_path,
        ["search", sp2.name, "--name", "uri", "--tracking-uri", uri, "--storage", "studies.db"],
        CLEAN,
    )
    assert p2.returncode == 0, p2.stderr[-2000:]
    out, err = p2.stdout, p2.stderr

    # the password: not in any output, MLflow param/tag/metric, Optuna attribute, Ray log/file
    c = tracking.client(server.uri)
    tracking.Target(server.uri, "admin", password).apply()
    texts = [p.stdout, p.stderr, out, err]
    for exp in c.search_experiments():
        for r in c.search_runs([exp.experiment_id], max_results=1000):
            texts.append(json.dumps([r.data.params, r.data.tags, r.data.metrics]))
    from remedies.results.report import load_study

    for name in ("env", "uri"):
        study = load_study(name, str(tmp_path / "studies.db"))
        texts.append(json.dumps(study.user_attrs, default=str))
        texts += [json.dumps(t.user_attrs, default=str) for t in study.trials]
    assert not [t for t in texts if password in t]
    for root in (tmp_path, Path("/tmp/ray")):
        for f in root.rglob("*"):
            if f.is_file() and f.stat().st_mtime >= t0 and f.stat().st_size < 50_000_000:
                assert password.encode() not in f.read_bytes(), f
