"""endpt.conf's path keys looked at while `twistd pktendpoint` starts (confpaths): one
line naming the file, the line and the key for each path that cannot be used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.python import usage

from packetlab.endpoint.config import ConfigError, EndpointConfig, parse_config
from packetlab.endpoint.confpaths import check_paths, keys_for
from packetlab.endpoint.tap import Options

FILE_KEYS = [
    "ControllerCertChainPath",
    "EndpointPrivKey",
    "EndpointOpPubKeyPath",
    "EndpointAgentCertPath",
    "BrokerChainRootPath",
    "SubPrivCertChainPath",
]
DB_KEYS = ["RLimDBPath", "MonitorPersistentPath"]


def config(tmp_path: Path, key: str, value: str, *, nosub: bool = False) -> EndpointConfig:
    """Every path key at a good file, then `key` at `value` (line 9 of e.conf)."""
    good = tmp_path / "good"
    good.write_text("x")
    lines = [f"{k} {good}" for k in FILE_KEYS] + [f"NoSubMode {int(nosub)}", f"{key} {value}"]
    return parse_config(lines, "e.conf")


def fault(cfg: EndpointConfig, tls: bool = True) -> str:
    with pytest.raises(ConfigError) as e:
        check_paths(cfg, tls=tls)
    return str(e.value)


@pytest.mark.parametrize("key", FILE_KEYS)
def test_a_file_key_missing_or_a_directory(tmp_path: Path, key: str) -> None:
    missing = tmp_path / "nope" / "c.cert"
    assert fault(config(tmp_path, key, str(missing))) == (
        f"e.conf:8: {key}: {missing}: no such file (directory '{missing.parent}' does not exist)"
    )
    assert fault(config(tmp_path, key, str(tmp_path / "c.cert"))) == (
        f"e.conf:8: {key}: {tmp_path / 'c.cert'}: no such file"
    )
    assert fault(config(tmp_path, key, str(tmp_path))) == (
        f"e.conf:8: {key}: {tmp_path}: is a directory, not a file"
    )


@pytest.mark.parametrize("key", DB_KEYS)
def test_a_database_key_in_a_missing_directory_or_at_a_directory(tmp_path: Path, key: str) -> None:
    missing = tmp_path / "nope" / "db.sqlite3"
    assert fault(config(tmp_path, key, str(missing))) == (
        f"e.conf:8: {key}: {missing}: directory '{missing.parent}' does not exist "
        "(create it, or correct the path)"
    )
    assert fault(config(tmp_path, key, str(tmp_path))).startswith(
        f"e.conf:8: {key}: {tmp_path}: is a directory; the key names the database file"
    )
    under_file = tmp_path / "good" / "db.sqlite3"  # its "directory" is a file
    assert fault(config(tmp_path, key, str(under_file))) == (
        f"e.conf:8: {key}: {under_file}: directory '{tmp_path / 'good'}' is not a directory "
        "(create it, or correct the path)"
    )
    # A new database in an existing directory, or an existing one, is fine.
    check_paths(config(tmp_path, key, str(tmp_path / "new.sqlite3")), tls=True)
    check_paths(config(tmp_path, key, str(tmp_path / "good")), tls=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files (integration test)")
def test_unreadable_and_unwritable_as_a_user(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.write_text("x")
    locked.chmod(0)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert fault(config(tmp_path, "EndpointPrivKey", str(locked))).endswith(
            "cannot be read: Permission denied"
        )
        assert fault(config(tmp_path, "RLimDBPath", str(locked))).endswith(
            "cannot be opened for reading and writing: Permission denied"
        )
        assert "is not writable by this user" in fault(
            config(tmp_path, "MonitorPersistentPath", str(ro / "pm.sqlite3"))
        )
    finally:
        ro.chmod(0o755)


def test_only_the_keys_the_mode_reads(tmp_path: Path) -> None:
    """NoSub mode leaves the broker keys unread (a demo endpt.conf sets them all);
    plaintext reads no credentials and no accounting, only the monitors' memory."""
    cfg = config(tmp_path, "EndpointAgentCertPath", str(tmp_path / "missing"), nosub=True)
    check_paths(cfg, tls=True)
    cfg.nosub_mode = False
    assert "EndpointAgentCertPath" in fault(cfg)
    cfg = config(tmp_path, "RLimDBPath", str(tmp_path / "nope" / "db"), nosub=True)
    check_paths(cfg, tls=False)
    assert keys_for(cfg, tls=False) == ((), ("MonitorPersistentPath",))
    # The default databases (unset) are made in the pktlab home when first used.
    check_paths(parse_config(["NoSubMode 1"], "e.conf"), tls=True)


def test_twistd_stops_at_a_bad_monitor_persistent_path(tmp_path: Path) -> None:
    """Was: the daemon started, and the path was first opened by a session's monitor."""
    conf = tmp_path / "endpt.conf"
    conf.write_text(f"# pm\nMonitorPersistentPath {tmp_path}/no/pm.sqlite3\n")
    opts = Options()
    with pytest.raises(usage.UsageError) as e:
        opts.parseOptions(["-c", str(conf), "--insecure-plaintext"])
    assert str(e.value) == (
        f"{conf}:2: MonitorPersistentPath: {tmp_path}/no/pm.sqlite3: directory "
        f"'{tmp_path}/no' does not exist (create it, or correct the path)"
    )
    with pytest.raises(usage.UsageError, match=r"--set MonitorPersistentPath: .* is a directory"):
        Options().parseOptions(
            ["-c", str(conf), "--insecure-plaintext", "--set", f"MonitorPersistentPath={tmp_path}"]
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_under_twistd_u_the_databases_are_checked_as_that_user(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`twistd -u nobody pktendpoint` with the home's RLimDBPath in root's 0700 directory:
    it started (every check ran as root), and the first session with limits failed with
    two tracebacks (`No module named 'sqlite3'` with Python under /root; else `attempt to
    write a readonly database`: the file was made by root at start). Now one line at
    start, and a usable directory gets the databases made by that user."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="pktlab-ops30-"))  # /tmp: nobody can reach it
    try:
        top.chmod(0o755)
        (top / "root").mkdir(mode=0o700)
        (top / "theirs").mkdir()
        os.chown(top / "theirs", 65534, 65534)
        conf = top / "endpt.conf"

        def start(db: Path) -> Options:
            conf.write_text(f"NoSubMode 1\nMonitorPersistentPath {db}\n")
            opts = Options()
            opts.parent = usage.Options()  # twistd's, with -u 65534 -g 65534 parsed
            opts.parent.update(uid=65534, gid=65534)
            opts.parseOptions(["-c", str(conf), "--insecure-plaintext"])
            return opts

        with pytest.raises(SystemExit) as e:
            start(top / "root" / "pm.sqlite3")
        assert e.value.code == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"twistd pktendpoint: {conf}:2: MonitorPersistentPath: {top}/root/pm.sqlite3: "
            "Permission denied; the daemon runs as uid 65534 once started"
        )
        start(top / "theirs" / "pm.sqlite3")
        made = (top / "theirs" / "pm.sqlite3").stat()
        assert (made.st_uid, made.st_size) == (65534, 0)
        # RLimDBPath unset: the pktlab home's file, made by root at start before.
        from packetlab.endpoint.confpaths import check_databases_as

        cfg = parse_config(["NoSubMode 1"], "e.conf")
        home_db = str(top / "root" / "endpt.rlim.sqlite3")
        with pytest.raises(ConfigError) as err:
            check_databases_as(cfg, tls=True, uid=65534, gid=65534, defaults=[home_db])
        assert str(err.value) == (
            f"RLimDBPath (unset: the pktlab home's): {home_db}: Permission denied; the "
            "daemon runs as uid 65534 once started"
        )
    finally:
        shutil.rmtree(top)
