"""Real components shared across the test tree: one local Ray instance, one `mlflow server`
subprocess (SQLite backend, HTTP client), a PostgreSQL server and an S3-compatible server per
test session — all slow to start — and Ray for data-parallel runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# the session's own Ray binds to 127.0.0.1 like the search's (read when ray is first imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# S3 tests talk to a local moto server; Ray workers inherit these from the session's raylet
for k, v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(k, v)


@pytest.fixture(scope="session")
def ray_local():
    import ray

    # one declared GPU (Ray schedules it whether or not a physical one exists): the GPU
    # scheduling path runs on CPU-only CI too; trials there fall back to torch's CPU device
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 that a test can stop and start again (same port,
    same database): what a tracking-server outage looks like to a search."""

    def __init__(
        self,
        d: Path,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        artifacts: str | None = None,
    ) -> None:
        self.d, self.extra, self.env = d, extra or [], env
        self.artifacts = artifacts or str(d / "artifacts")  # a folder, or s3://… (proxied)
        d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        log = (self.d / "server.log").open("a")
        self.proc = subprocess.Popen(
            [
                str(mlflow_bin),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.d / 'mlflow.db'}",
                "--artifacts-destination",
                self.artifacts,
                "--workers",
                "1",
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2).read()
                return self
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError((self.d / "server.log").read_text()[-2000:]) from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        import signal

        try:  # the server's own workers are in its session: end them all
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


def start_mlflow_server(
    d: Path,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    artifacts: str | None = None,
) -> MlflowServer:
    return MlflowServer(d, extra, env, artifacts).start()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URI of a real MLflow tracking server on 127.0.0.1 (artifacts proxied to a tmp folder)."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server.uri
    server.stop()


def wait_up(url: str, alive, timeout: float, what: str) -> None:
    """Poll `url` until it answers; fail with `what()` once `alive()` is false or time is up."""
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            assert alive() and time.time() < deadline, what()
            time.sleep(0.3)


def start_moto(d: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """moto's standalone S3-compatible server on 127.0.0.1: (process, port)."""
    port = free_port()
    log = (d / "moto.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    wait_up(
        f"http://127.0.0.1:{port}/moto-api/",
        lambda: proc.poll() is None,
        60,
        lambda: (d / "moto.log").read_text()[-2000:],
    )
    return proc, port


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto's standalone server) on 127.0.0.1 with one bucket;
    yields the `s3://` URI prefix of that bucket with the endpoint override pyarrow needs."""
    import boto3

    proc, port = start_moto(tmp_path_factory.mktemp("moto"))
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(
        Bucket="remedies-test"
    )
    yield f"s3://remedies-test/{{}}?endpoint_override=127.0.0.1:{port}&scheme=http"
    proc.terminate()
    proc.wait(timeout=20)


def postgres_server():
    """A real PostgreSQL server (Debian's `postgresql`) on 127.0.0.1, its own data folder, one
    empty database; yields its SQLAlchemy URL, and stops the server after. Skipped where the
    server is not installed, unless REMEDIES_REQUIRE_POSTGRES=1 (set by CI, which installs it).
    A plain generator, so a script (benchmarks/lock_stress.py) starts one as the tests do."""
    import shutil
    import tempfile

    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not bins:
        if os.environ.get("REMEDIES_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("PostgreSQL is required here: apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pg = bins[-1].parent
    # the server refuses to run as root: as root, run it as Debian's `postgres` user, in a
    # folder that user can reach (pytest's own tmp folders are private to root)
    d = Path(tempfile.mkdtemp(prefix="remedies-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(d, "postgres", "postgres")
        d.chmod(0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    run = lambda *a: subprocess.run([*as_user, *a], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(pg / "initdb"), "-D", str(d / "data"), "-A", "trust", "-U", "remedies")
    run(
        str(pg / "pg_ctl"),
        "-D",
        str(d / "data"),
        "-l",
        str(d / "server.log"),
        "-w",
        "-o",
        f"-p {port} -k {d} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        run(str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "remedies", "studies")
        yield f"postgresql+psycopg2://remedies@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            [*as_user, str(pg / "pg_ctl"), "-D", str(d / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    yield from postgres_server()


@pytest.fixture(scope="module")
def ray_workers():
    """A local Ray for data-parallel runs (Ray Train workers), or the one already running (the
    service tests' session Ray): reused, so a test session starts Ray as rarely as possible."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    # workers import `tests.factories` by path; the controller polls reports every 0.2 s, not 2
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def data_parallel_env(monkeypatch):
    """The environment of a `remedies search` subprocess with data-parallel trials: its Ray
    Train workers import `tests.factories` by path, and Ray Train checks them every 0.2 s, not 2
    (a run's end, and a dead worker, are seen sooner)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
