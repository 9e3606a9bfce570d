"""`pktlab run http` beside curl 7.88.1 on a name with an IPv6 and an IPv4 address
(session 26, odds26): curl tries each (happy eyeballs, IPv6 first); ours took the first
A alone. In a mount namespace of their own, curl reads the name from /etc/hosts and
ours from the endpoint's DNS server (eyeballs_servers.py on 127.0.0.54:53, named in a
resolv.conf bound over /etc/resolv.conf); a web server listens on one address only, so
the other refuses. `-v`'s connect lines, `%{remote_ip}`, `%{num_connects}` and the exit
status compared."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from childserver import serve_child

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN = [str(REPO / ".venv" / "bin" / "pktlab"), "run", "http"]
W = "%{exitcode} %{remote_ip} %{num_connects}\\n"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not shutil.which("curl") or not shutil.which("unshare"), reason="no curl"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace, port 53)"),
]


def _port_53_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.54", 53))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("eyeballs")
    hosts, resolv = where / "hosts", where / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n::1 eyes.test\n127.0.0.1 eyes.test\n")
    resolv.write_text("nameserver 127.0.0.54\n")
    return hosts, resolv


@pytest.fixture()
def dns53() -> None:
    if not _port_53_free():
        pytest.skip("127.0.0.54:53 is taken")


def both(files: tuple[Path, Path], argv: list[str]) -> subprocess.CompletedProcess[str]:
    hosts, resolv = files
    script = (
        'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    )
    return subprocess.run(["unshare", "-m", "sh", "-c", script, str(hosts), str(resolv), *argv],
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip


def connect_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if line.startswith(("*   Trying", "* connect to", "* Connected to"))]  # fmt: skip


def test_every_address_of_the_name_as_curl(files: tuple[Path, Path], dns53: None) -> None:
    # both cases in one test: the DNS server's port 53 is one (xdist workers would race)
    for addr in ("127.0.0.1", "::1"):  # the web server's: the other address refuses
        with serve_child(str(HERE / "eyeballs_servers.py"), addr) as port:
            words = ["-sv", "-o", os.devnull, "-w", W.replace("\\n", "\n"),
                     f"http://eyes.test:{port}/x"]  # fmt: skip
            a = both(files, [*RUN, *words])
            b = both(files, ["curl", *words])
        assert "Traceback" not in a.stderr, a.stderr
        assert a.stdout == b.stdout == f"0 {addr} 1\n", (addr, a.stderr, b.stderr)
        assert connect_lines(a.stderr) == connect_lines(b.stderr)
        assert connect_lines(a.stderr)[0] == f"*   Trying [::1]:{port}..."
