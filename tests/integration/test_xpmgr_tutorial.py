"""The reference's "Running our first external experiment" tutorial, step by step with our
commands (docs/xpmgr.md says which: `pktlab xpmgr` for pktxpmgr, `pktlab ppks sign` for
PPKSMan, `twistd pktproxy` for the proxy), in a scratch $HOME: `pktlab init`, the CSR under
~/.pktlab/csrs signed by the operator ("CAIDA", another home), `mv` of its key and
certificate, the tutorial's two `printf "%b" ... >>` lines verbatim, then the example mlet
`test_http_get` (built by examples/mlets/Makefile) run on the operator's endpoint in
passive mode and in proxy mode with a host name for `-a`, the whole HTTP response shown.
The endpoint runs NoSub with the snikey the manager prints (the tutorial's broker hands
it the xdescr instead; docs/xpmgr.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from pxworld import ENV, EndpointProc, Proc, ProxyProc, http_server

PAGE = b"<html><body><h1>Example Domain</h1></body></html>\n"


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("no make or cc on this machine")
    tmp = tmp_path_factory.mktemp("tutorial")
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    env = dict(ENV, HOME=str(home))
    env.pop("PKTLAB_HOME", None)
    pktlab = [sys.executable, "-m", "packetlab"]
    _run([*pktlab, "init"], env, work)
    _run([*pktlab, "init", "--home", str(tmp / "caida")], env, work)  # the operator
    assert (home / ".pktlab/csrs/exppriv_exper.csr").is_file()  # step 2: pre-generated
    # the operator signs the CSR it was sent and hands back the certificate and its key
    _run([*pktlab, "ppks", "sign", "exppriv", str(tmp / "caida/keys/k_eop"), "0",
          "2147483647", "caida_exppriv.cert", "-r", str(home / ".pktlab/csrs/exppriv_exper.csr")],
         env, work)  # fmt: skip
    shutil.copy(tmp / "caida/keys/k_eop.pub", work / "caida_k_eop.pub")
    script = r"""
mv caida_k_eop.pub ~/.pktlab/keys
mv caida_exppriv.cert ~/.pktlab/certs
printf "%b" "\nExpExec 0::${HOME}/.pktlab/certs/caida_exppriv.cert,${HOME}/.pktlab/certs/pubcmd_exper_xc.cert:${HOME}/.pktlab/keys/caida_k_eop.pub::\n" >> ~/.pktlab/xpmgr.conf
printf "%b" "\nExpExec 0::${HOME}/.pktlab/certs/caida_exppriv.cert,${HOME}/.pktlab/certs/pubcmd_exper_xc.cert:${HOME}/.pktlab/keys/caida_k_eop.pub::\n" >> ~/.pktlab/xpmgr.proxy.conf
"""  # noqa: E501 (step 3, as the tutorial writes it)
    _run(["sh", "-ec", script], env, work)
    mlets = work / "example_mlets"
    shutil.copytree(REPO / "examples/mlets", mlets)
    _run(["make", "-s", "-C", str(mlets), "CFLAGS=-O2 -Wall -Werror"], env, work)
    return {"home": home, "work": work, "caida": tmp / "caida",
            "mlet": mlets / "test_http_get"}  # fmt: skip


@pytest.fixture
def web() -> Iterator[int]:
    with http_server(PAGE) as port:
        yield port


def _xpmgr(world: dict[str, Path], tmp: Path, *args: str) -> Proc:
    env = dict(ENV, HOME=str(world["home"]))
    env.pop("PKTLAB_HOME", None)
    argv = [sys.executable, "-m", "packetlab", "xpmgr", *args]
    return Proc(argv, tmp / f"xpmgr-{os.urandom(3).hex()}.log", world["work"], env=env)


def _caida_snikey(xp: Proc, conf: str) -> str:
    """The snikey the manager drew for the tutorial's ExpExec line (the last one)."""
    line = xp.wait_log(r"snikeys .*\n").group(0)
    keys = re.findall(rf"([a-z0-9]+) \({re.escape(conf)}:(\d+)\)", line)
    assert keys, line
    return keys[-1][0]


def test_first_external_experiment_passive(
    world: dict[str, Path], tmp_path: Path, web: int, procs: list[Proc]
) -> None:
    # `pktxpmgr [EXAMPLE_MLETS_DIR_PATH]/test_http_get` (the default config, ~/.pktlab);
    # -a only because the default port 20556 may be taken on a shared test machine
    xp = _xpmgr(world, tmp_path, "-a", "localhost:0", str(world["mlet"]), f"localhost:{web}")
    procs.append(xp)
    port = xp.wait_log(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    key = _caida_snikey(xp, "xpmgr.conf")
    procs.append(EndpointProc(tmp_path, world["caida"], f"127.0.0.1:{port}", "--snikey", key,
                              "--sessions", "1"))  # fmt: skip
    xp.wait_log(r"done 1, failed 0")
    xp.proc.send_signal(signal.SIGINT)  # "one can kill pktxpmgr with SIGINT directly"
    assert xp.proc.wait(20) == 0, xp.text()
    out = xp.text()
    assert "HTTP/1.0 200 OK" in out and PAGE.decode() in out, out  # "HTML code"
    assert (world["work"] / "xpmgr-results.jsonl").is_file()


def test_first_external_experiment_proxy_mode(
    world: dict[str, Path], tmp_path: Path, web: int, procs: list[Proc]
) -> None:
    proxy = ProxyProc(tmp_path, world["caida"])  # the proxy operator's own identity
    procs.append(proxy)
    # `pktxpmgr -c ~/.pktlab/xpmgr.proxy.conf -a pktproxy.caida.org .../test_http_get`
    conf = os.path.expanduser(str(world["home"] / ".pktlab/xpmgr.proxy.conf"))
    xp = _xpmgr(world, tmp_path, "-c", conf, "-a", f"localhost:{proxy.setup}", "-n", "2",
                str(world["mlet"]), f"localhost:{web}")  # fmt: skip
    procs.append(xp)
    key = _caida_snikey(xp, "xpmgr.proxy.conf")
    proxy.counters("backlog == 4")  # TargetBacklogConn 2 for each of the two ExpExec lines
    procs.append(EndpointProc(tmp_path, world["caida"], f"localhost:{proxy.endpoints}",
                              "--snikey", key, "--sessions", "2"))  # fmt: skip
    assert xp.proc.wait(60) == 0, xp.text()
    out = xp.text()
    assert out.count(PAGE.decode()) == 2, out
    assert "endpoints seen 2, running 0, done 2, failed 0" in out
    assert proxy.counters("splices == 2")["splices"] == 2


def test_first_external_experiment_published_to_the_operators_broker(
    world: dict[str, Path], tmp_path: Path, web: int, procs: list[Proc]
) -> None:
    """Step 4 as the tutorial tells it: the manager publishes each ExpExec to the broker
    and the operator's endpoint, subscribed there, gets the xdescr of the line for its
    operator's key (the broker filters by channel) and connects with its sni_key."""
    from broker_world import BrokerProcess

    from packetlab.ppks import PktlabHome

    broker = BrokerProcess(PktlabHome.at(world["caida"]), tmp_path)
    try:
        conf = tmp_path / "xpmgr.conf"
        text = (world["home"] / ".pktlab/xpmgr.conf").read_text()
        conf.write_text(  # docs/xpmgr.md tutorial 2 step 3
            text.replace("EnableExpPublication 0", "EnableExpPublication 1")
            + f"BrokerAddr 127.0.0.1:{broker.pub_port}\n"
            + f"PubAgentCertPath {world['home']}/.pktlab/certs/agent_xc_xc.cert\n"
            + "PubPeriod 600000000000\n"
        )
        xp = _xpmgr(world, tmp_path, "-c", str(conf), "-a", "127.0.0.1:0", "-n", "1",
                    str(world["mlet"]), f"localhost:{web}")  # fmt: skip
        procs.append(xp)
        key = _caida_snikey(xp, "xpmgr.conf")
        xp.wait_log(rf"published to 127\.0\.0\.1:\d+: .*sni_key={key};")
        procs.append(EndpointProc(tmp_path, world["caida"], None, "--set", "NoSubMode=0",
                                  "--broker", f"127.0.0.1:{broker.sub_port}"))  # fmt: skip
        assert xp.proc.wait(60) == 0, xp.text()
        assert PAGE.decode() in xp.text()
        [r] = [json.loads(x) for x in (world["work"] / "xpmgr-results.jsonl").read_text()
               .splitlines() if f'"{key}"' in x]  # fmt: skip
        assert r["status"] == "done", r
    finally:
        broker.stop()


def test_example_test_dns_asks_from_the_endpoint(
    world: dict[str, Path], tmp_path: Path, procs: list[Proc]
) -> None:
    """The reference's other example mlet, `test_dns [DOMAIN [IP]]` (here `IP[:PORT]`):
    an A query sent by the endpoint over UDP, each A record printed; an NXDOMAIN and a
    server that never answers are a failed result with the reason."""
    from childserver import serve_child

    mlet = str(world["mlet"].parent / "test_dns")
    with serve_child(str(Path(__file__).parent / "dns_zone_server.py")) as dns:
        for name, want, status in (("a.test", "a.test A 192.0.2.1\na.test A 192.0.2.2\n", "done"),
                                   ("nx.test.", "nx.test. rcode 3\n", "failed")):  # fmt: skip
            results = str(tmp_path / f"{name}.jsonl")
            xp = _xpmgr(world, tmp_path, "-a", "127.0.0.1:0", "-n", "1", "--results", results,
                        mlet, name, f"127.0.0.1:{dns}")  # fmt: skip
            procs.append(xp)
            port = xp.wait_log(r"listening on 127\.0\.0\.1:(\d+)").group(1)
            procs.append(EndpointProc(tmp_path, world["home"] / ".pktlab", f"127.0.0.1:{port}",
                                      "--sessions", "1"))  # fmt: skip
            # the one endpoint failed (NXDOMAIN): exit status 3 (session 31; was 0)
            assert xp.proc.wait(60) == (0 if status == "done" else 3), xp.text()
            [r] = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
            assert (r["status"], r["output"]) == (status, want), r
