"""The path-valued endpt.conf keys, looked at once while ``twistd pktendpoint`` starts.

A file key at a missing file, a directory or a file the daemon may not read, and a
database key (``RLimDBPath``, ``MonitorPersistentPath``) at a directory, in a directory
that does not exist, or where the daemon may not write, is one line naming the file, the
line and the key (``endpt.conf:7: MonitorPersistentPath: /x/pm.sqlite3: directory '/x'
does not exist``). Before, ``MonitorPersistentPath`` was first opened when a session's
monitor needed it: the daemon started, and each such session's monitors failed then.

Only the keys the mode reads are looked at (`keys_for`): a broker-mode key left in the
file of an endpoint run in NoSub mode is not read, so it is not an error.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Sequence
from pathlib import Path

from packetlab.endpoint.config import ConfigError, EndpointConfig

__all__ = ["check_databases_as", "check_paths", "keys_for"]

#: Keys whose files are read at start (certificates, keys): each must be a readable file.
_TLS_FILES = ("ControllerCertChainPath", "EndpointPrivKey", "EndpointOpPubKeyPath")
_BROKER_FILES = ("EndpointAgentCertPath", "BrokerChainRootPath", "SubPrivCertChainPath")


def keys_for(cfg: EndpointConfig, *, tls: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(file keys, database keys) the daemon reads in its mode: TLS (NoSub or broker
    mode) reads the credentials and the accounting database, broker mode its own
    credentials too; every mode may open the monitors' persistent memory."""
    files: tuple[str, ...] = _TLS_FILES if tls else ()
    if tls and not cfg.nosub_mode:
        files += _BROKER_FILES
    databases = ("RLimDBPath", "MonitorPersistentPath") if tls else ("MonitorPersistentPath",)
    return files, databases


def _files_of(cfg: EndpointConfig, key: str) -> list[str]:
    value = {
        "ControllerCertChainPath": cfg.controller_chain,
        "EndpointPrivKey": cfg.private_key,
        "EndpointOpPubKeyPath": cfg.eop_pubkeys,
        "EndpointAgentCertPath": cfg.agent_cert,
        "BrokerChainRootPath": cfg.broker_roots,
        "SubPrivCertChainPath": cfg.subpriv_chain,
        "RLimDBPath": cfg.rlim_db,
        "MonitorPersistentPath": cfg.monitor_persistent_path,
    }[key]
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_paths(cfg: EndpointConfig, *, tls: bool) -> None:
    """`ConfigError` for the first path key of the mode that cannot be used as it is."""
    files, databases = keys_for(cfg, tls=tls)
    for key in files:
        for path in _files_of(cfg, key):
            why = _readable_file_fault(path)
            if why:
                raise ConfigError(f"{cfg.named(key)}: {path}: {why}")
    for key in databases:
        # A default (unset) database lives in the pktlab home, made when first used.
        for path in _files_of(cfg, key):
            why = _database_fault(path)
            if why:
                raise ConfigError(f"{cfg.named(key)}: {path}: {why}")


def check_databases_as(
    cfg: EndpointConfig, *, tls: bool, uid: int, gid: int, defaults: Sequence[str] = ()
) -> None:
    """`ConfigError` for the first database key of the mode that user `uid` (group `gid`)
    cannot use: twistd's ``-u``/``--uid`` switches to it after the start, where
    `check_paths`, run as root, passed. Before, `twistd -u nobody pktendpoint` with the
    home's ``RLimDBPath`` in root's 0700 ``~/.pktlab`` started, and the first session
    with limits failed with two tracebacks (the first `No module named 'sqlite3'` when
    Python lies under /root) and left the connect cycle stuck. Asked in a child that
    switches to the user, so that the kernel decides as it will for the daemon."""
    _, databases = keys_for(cfg, tls=tls)
    paths = [(cfg.named(key), path) for key in databases for path in _files_of(cfg, key)]
    # `defaults`: ``RLimDBPath`` left unset, the pktlab home's file (when its directory
    # exists; else root makes it at start, as without -u).
    paths += [("RLimDBPath (unset: the pktlab home's)", p) for p in defaults]
    if not paths:
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: switch, look, say the first fault, exit at once
        status = 0
        try:
            os.close(read)
            try:
                os.initgroups(pwd.getpwuid(uid).pw_name, gid)
            except (KeyError, OSError):
                os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            for key, path in paths:
                why = _database_fault(path)
                if why:
                    os.write(write, f"{key}: {path}: {why}".encode())
                    break
            else:  # made by the user, empty (SQLite's empty database): made by root at
                for _, path in paths:  # start, it was read-only to the daemon
                    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    said = b"".join(chunks).decode("utf-8", "replace")
    if said:
        said = said.replace("by this user", f"by uid {uid} (twistd -u/--uid)")
        raise ConfigError(f"{said}; the daemon runs as uid {uid} once started")


def _readable_file_fault(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError as e:
        return _os_why(e, path)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    try:
        # Opened, not os.access'd: root without CAP_DAC_OVERRIDE, ACLs and the like are
        # the kernel's to decide. A regular file opens without blocking.
        with open(path, "rb"):
            pass
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    return None


def _database_fault(path: str) -> str | None:
    """A SQLite file in WAL mode: the file itself read and written, and its directory
    written (the -wal and -shm files are made beside it)."""
    parent = Path(path).parent
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if not parent.is_dir():
            kind = "is not a directory" if parent.exists() else "does not exist"
            return f"directory {str(parent)!r} {kind} (create it, or correct the path)"
        st = None
    except OSError as e:
        return _os_why(e, path)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            return "is a directory; the key names the database file in it (e.g. DIR/name.sqlite3)"
        if not stat.S_ISREG(st.st_mode):
            return "is not a regular file"
        try:
            with open(path, "r+b"):  # opened for writing, nothing written
                pass
        except OSError as e:
            return f"cannot be opened for reading and writing: {e.strerror or e}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (
            f"directory {str(parent)!r} is not writable by this user (SQLite makes the "
            "database's -wal and -shm files beside it)"
        )
    return None


def _os_why(e: OSError, path: str) -> str:
    if isinstance(e, FileNotFoundError):
        parent = Path(path).parent
        if not parent.is_dir():
            return f"no such file (directory {str(parent)!r} does not exist)"
        return "no such file"
    if isinstance(e, NotADirectoryError):
        return "a part of the path is a file, not a directory"
    return e.strerror or str(e)
