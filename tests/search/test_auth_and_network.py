"""A tracking server with basic auth, and what a search exposes: its credentials nowhere, its
sockets on 127.0.0.1 only. Real `mlflow server --app-name basic-auth`, real local Ray."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from remedies.search import tracking
from tests.conftest import start_mlflow_server
from tests.search.test_faults import EXE, space_file, trials

pytestmark = pytest.mark.slow
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def listening(pid: int) -> list[tuple[str, str]]:
    """(process name, local address) of every listening TCP socket of `pid` and its children."""
    pids = {pid} | {c.pid for c in psutil.Process(pid).children(recursive=True)}
    names = {p: psutil.Process(p).name() for p in pids if psutil.pid_exists(p)}
    return [
        (names.get(c.pid, "?"), c.laddr.ip)
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in names
    ]


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

    # 2. in the URI, watched while it runs: every listening socket of the search is local
    uri = server.uri.replace("http://", f"http://admin:{password}@")
    sp2 = space_file(tmp_path, "auth2", n=2, epochs=60)
    proc = subprocess.Popen(
        [
            EXE,
            "search",
            sp2.name,
            "--name",
            "uri",
            "--tracking-uri",
            uri,
            "--storage",
            "studies.db",
        ],
        cwd=tmp_path,
        env=CLEAN,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not any(t.user_attrs.get("mlflow_run_id") for t in trials(tmp_path, "uri")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.3)
    time.sleep(2)  # trial processes up
    socks = listening(proc.pid)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-2000:]
    assert socks and {name for name, _ in socks} >= {"raylet", "gcs_server"}, socks
    exposed = [(n, ip) for n, ip in socks if ip not in ("127.0.0.1", "::ffff:127.0.0.1")]
    assert not exposed, exposed

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
