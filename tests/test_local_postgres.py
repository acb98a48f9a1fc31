"""The local PostgreSQL of the tests and demos: created, started, reused, restarted after kill -9, stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from segment_pipeline.devtools.postgres import LocalPostgres, PostgresError, stop_when_gone


def postmaster_pid(cluster: LocalPostgres) -> int:
    return int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def login(server, dbname: str, user: str, password: str) -> list:
    with (
        psycopg2.connect(
            host=server.host, port=server.port, dbname=dbname, user=user, password=password, connect_timeout=5
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("select current_user, current_database()")
        return cursor.fetchall()


def test_start_creates_reuses_survives_kill_9_and_stops(server_dir):
    cluster = LocalPostgres(server_dir, log=lambda _: None)
    server = cluster.start()
    if os.geteuid() == 0:  # PostgreSQL refuses root: the server runs as Debian's postgres account
        assert server_dir.stat().st_uid != 0
        assert Path(f"/proc/{postmaster_pid(cluster)}").stat().st_uid == server_dir.stat().st_uid
    cluster.ensure_database(server, "lake", "pipeline", "first-password")
    cluster.ensure_database(server, "lake", "pipeline", "second-password")  # again: the password is set again
    assert login(server, "lake", "pipeline", "second-password") == [("pipeline", "lake")]
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        login(server, "lake", "pipeline", "first-password")

    # run twice: the same server, untouched
    pid = postmaster_pid(cluster)
    assert cluster.start() == server
    assert postmaster_pid(cluster) == pid

    # killed with kill -9: the next start brings it back on the same data and, the port being free, the same port
    os.kill(pid, signal.SIGKILL)
    restarted = cluster.start()
    assert postmaster_pid(cluster) != pid
    assert restarted.port == server.port
    assert login(restarted, "lake", "pipeline", "second-password") == [("pipeline", "lake")]

    assert cluster.stop() is True
    assert not accepts_connections(server.port)
    assert cluster.server() is None
    assert cluster.stop() is False


def test_a_cluster_whose_creation_was_cut_short_is_created_again(server_dir):
    cluster = LocalPostgres(server_dir, log=lambda _: None)
    # what a start killed during initdb leaves: a data folder, but not the mark of a finished creation
    (server_dir / "data").mkdir(parents=True)
    (server_dir / "data" / "PG_VERSION").write_text("15\n")
    server = cluster.start()
    with server.admin() as connection, connection.cursor() as cursor:
        cursor.execute("select 1")
        assert cursor.fetchall() == [(1,)]


def test_the_watcher_stops_the_server_once_its_owner_has_died(server_dir):
    cluster = LocalPostgres(server_dir, log=lambda _: None)
    server = cluster.start()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    watcher = stop_when_gone(server_dir, owner.pid)
    try:
        time.sleep(1.5)
        assert accepts_connections(server.port)  # the owner lives: the server stays
        owner.kill()  # no clean-up code of the owner runs
        owner.wait()
        watcher.wait(timeout=60)
        assert not accepts_connections(server.port)
        assert cluster.server() is None
    finally:
        owner.kill()
        watcher.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the folder to another account")
def test_a_folder_the_server_account_cannot_reach_is_refused_with_what_to_do(tmp_path):
    # pytest's own temporary folders are closed to other users (mode 700)
    cluster = LocalPostgres(tmp_path / "cluster", log=lambda _: None)
    with pytest.raises(PostgresError, match=r"cannot reach .*\(chmod o\+x\)"):
        cluster.start()
