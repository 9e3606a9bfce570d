"""The reference's "first external experiment" tutorial, its config steps as written:
`pktlab init`'s home has `xpmgr.conf` and `xpmgr.proxy.conf`, and the tutorial's
`printf "%b" "\\nExpExec 0::...caida_exppriv.cert,...pubcmd_exper_xc.cert:...caida_k_eop.pub::\\n"
>> FILE` appended to each gives a config the manager runs (passive, and proxy mode);
the snikey of each ExpExec line is said with the line it serves."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from packetlab.cli.init import init_home
from packetlab.controller.xpmgr import HostPort, Manager
from packetlab.controller.xpmgrconf import XpmgrConfigError, load_xpmgr_config
from packetlab.ppks import (
    CertType,
    PktlabHome,
    generate_private_key,
    issue_certificate,
    write_key_pair,
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    """A home after the tutorial's steps 2-3: CAIDA's key and exppriv installed, the
    ExpExec line appended to both configs as the tutorial's printf does."""
    h = PktlabHome.at(tmp_path_factory.mktemp("tut") / ".pktlab")
    keys = init_home(h)
    caida = generate_private_key()
    write_key_pair(h.root / "caida_k_eop", caida)  # the operator's; we get the .pub
    (h.root / "caida_k_eop.pub").rename(h.key_path("caida_k_eop").with_suffix(".pub"))
    (h.root / "caida_k_eop").unlink()
    cert = issue_certificate(CertType.EXPPRIV, caida, keys["k_exper"], 0, 2147483647)
    h.cert_path("caida_exppriv").write_bytes(cert.to_pem())
    home_dir = h.root.parent
    line = (
        f"\nExpExec 0::{home_dir}/.pktlab/certs/caida_exppriv.cert,"
        f"{home_dir}/.pktlab/certs/pubcmd_exper_xc.cert:{home_dir}/.pktlab/keys/caida_k_eop.pub::\n"
    )
    for name in ("xpmgr.conf", "xpmgr.proxy.conf"):
        with open(h.root / name, "a") as f:  # printf "%b" "..." >> ~/.pktlab/NAME
            f.write(line)
    return h


def test_init_writes_the_proxy_config_the_tutorial_appends_to(home: PktlabHome) -> None:
    """It was not written: the printf created a file of one ExpExec line, and
    `pktlab xpmgr -c ~/.pktlab/xpmgr.proxy.conf -a PROXY ...` said `EnableExpPublication is
    required`."""
    cfg = load_xpmgr_config(home.root / "xpmgr.proxy.conf")
    assert cfg.enable_proxy and not cfg.enable_publication
    assert cfg.backlog_agent_cert == str(home.cert_path("agent_xc_xc"))
    assert [e.is_default for e in cfg.exp_exec] == [True, False]
    assert cfg.exp_exec[1].chain[0].endswith("/certs/caida_exppriv.cert")
    plain = load_xpmgr_config(home.root / "xpmgr.conf")
    assert not plain.enable_proxy and len(plain.exp_exec) == 2


@pytest.mark.parametrize("name", ["xpmgr.conf", "xpmgr.proxy.conf"])
def test_the_amended_configs_run_and_say_each_snikeys_line(home: PktlabHome, name: str) -> None:
    cfg = load_xpmgr_config(home.root / name)
    out = io.StringIO()
    m = Manager(MemoryReactorClock(), cfg, ["/bin/true"], address=HostPort("127.0.0.1", 0),
                progress=out)  # fmt: skip
    m.start()
    said = out.getvalue()
    default, caida = m.snikeys
    # each random snikey with the line it serves: the endpoints of CAIDA's key must be
    # given the second one (NoSubModeSNIKey / --snikey), and a bare list did not say which
    lines = [i for i, t in enumerate((home.root / name).read_text().splitlines(), 1)
             if t.startswith("ExpExec")]  # fmt: skip
    assert f"{default} ({name}:{lines[0]}, default), {caida} ({name}:{lines[1]})" in said, said
    m.wrap_up()


def test_a_config_of_only_expexec_lines_says_how_it_came_about(tmp_path: Path) -> None:
    """`printf ... >> ~/.pktlab/xpmgr.proxy.conf` on a home from before this file was
    written creates it with the one line."""
    conf = tmp_path / "xpmgr.proxy.conf"
    conf.write_text("\nExpExec 0::a.cert,b.cert:k.pub::\n")
    with pytest.raises(XpmgrConfigError, match=re.escape(
        "xpmgr.proxy.conf: EnableExpPublication is required (the file holds only ExpExec "
        "lines: appended to a file that was not there?")):  # fmt: skip
        load_xpmgr_config(conf)
