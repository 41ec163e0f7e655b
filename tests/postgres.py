"""A throwaway PostgreSQL cluster for tests: initdb into a temporary folder, started on a free
port with its socket in that folder, stopped and removed at the end.

PostgreSQL refuses to run as root; as root, the cluster runs as the ``postgres`` user (which
Debian's package creates). Each test gets a database of its own, copied from a template that
MLflow's migrations ran on once, so that a new registry costs milliseconds, not seconds.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "manymodels"
PASSWORD = "pg-test-password"
TEMPLATE = "mlflow_template"


def binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(versions[0]).parent if versions else None


@dataclass
class Cluster:
    """A running cluster: its port, and fresh databases with MLflow's schema."""

    port: int
    bin_dir: Path

    def uri(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg2://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URI of a new database holding MLflow's empty schema."""
        name = f"mm_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return self.uri(name)

    def create_template(self) -> None:
        self._execute(f'CREATE DATABASE "{TEMPLATE}"')
        # In a separate process: its connections are gone when it exits, and a database can be
        # copied only while nobody is connected to it.
        migrate = (
            f"import mlflow; client = mlflow.MlflowClient(tracking_uri={self.uri(TEMPLATE)!r}); "
            "client.search_experiments(); client.search_registered_models()"
        )
        subprocess.run([sys.executable, "-c", migrate], check=True, capture_output=True,
                       timeout=300)  # fmt: skip

    def _execute(self, statement: str) -> None:
        import psycopg2

        connection = psycopg2.connect(self.uri("postgres").replace("+psycopg2", ""))
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()


@contextlib.contextmanager
def running_cluster(bin_dir: Path) -> Iterator[Cluster]:
    """Start a cluster in a new temporary folder; stop it and remove the folder afterwards."""
    root = Path(tempfile.mkdtemp(prefix="manymodels-pg-"))
    owner = _owner()
    try:
        os.chmod(root, 0o755)
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        (root / "password").write_text(PASSWORD)
        if owner is not None:
            os.chown(root / "password", owner.pw_uid, owner.pw_gid)
        _as_owner(owner, [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", USER,
                          f"--pwfile={root / 'password'}", "--auth-local=trust",
                          "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])  # fmt: skip
        port = _free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        _as_owner(owner, [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-o", options,
                          "-l", str(root / "log"), "-w", "-t", "60", "start"])  # fmt: skip
        try:
            cluster = Cluster(port, bin_dir)
            cluster.create_template()
            yield cluster
        finally:
            _as_owner(owner, [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m",
                              "immediate", "-w", "stop"], check=False)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as: ``postgres`` (or ``nobody``) when we are root, else
    ourselves (None)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and there is no 'postgres' user to run PostgreSQL as")


def _as_owner(owner: pwd.struct_passwd | None, command: list[str], check: bool = True) -> None:
    if owner is not None:
        command = ["runuser", "-u", owner.pw_name, "--", *command]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
    if check and finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {finished.stdout}{finished.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
