"""Channel authorisation and xdescr/dattr checks (§5.2, §5.5): each refusal has its code."""

from __future__ import annotations

import time

import pytest
from broker_fakes import make_world

from packetlab.broker.auth import (
    MAX_XDESCR,
    PubGrant,
    Refusal,
    SubGrant,
    check_publication,
    check_subscription,
)
from packetlab.ppks import generate_private_key, issue_certificate, key_id, raw_public_key
from packetlab.wire import Status

XD = b"controller_addr=127.0.0.1:20600;sni_key=abc;"
ZERO = bytes(32)


def test_subscribe_private_channel_proven_by_the_chain() -> None:
    w = make_world()
    g = check_subscription([w.subcmd.der], w.ep_raw, [w.channel], w.eop_raw, b"hostid=h1;")
    assert isinstance(g, SubGrant)
    assert g.channels == (w.channel,)
    assert [(p.name, p.value) for p in g.dattr] == [("hostid", "h1")]
    assert g.valid_until == 2**31 - 1  # the chain's not_after: the subscription's end


def test_subscribe_public_channel_needs_no_chain() -> None:
    g = check_subscription([], b"x" * 32, [b"public"], ZERO, b"")
    assert isinstance(g, SubGrant)
    assert g.valid_until is None  # nothing proven, nothing expires


def test_a_subscription_lasts_until_the_first_cert_of_its_chain_expires() -> None:
    from packetlab.ppks import generate_private_key, issue_certificate, key_id, raw_public_key

    eop, eop2, ep = (generate_private_key() for _ in range(3))
    subcmd = issue_certificate("subcmd", eop2, ep, 0, 5000)
    delpriv = issue_certificate("delpriv", eop, eop2, 0, 3000, del_type="reppriv")
    g = check_subscription(
        [subcmd.der, delpriv.der], raw_public_key(ep), [key_id(eop)], raw_public_key(eop),
        b"", now=1000,
    )  # fmt: skip
    assert isinstance(g, SubGrant) and g.valid_until == 3000


@pytest.mark.parametrize(
    "case",
    ["no chain", "zero eopkey", "other eop", "forged", "wrong agent", "wrong channel"],
)
def test_subscribe_private_refusals_are_esubbadchn(case: str) -> None:
    w = make_world()
    certs, agent, chans, eop = [w.subcmd.der], w.ep_raw, [w.channel], w.eop_raw
    if case == "no chain":
        certs = []
    elif case == "zero eopkey":
        eop = ZERO
    elif case == "other eop":
        eop = raw_public_key(generate_private_key())
    elif case == "forged":  # same shape, signed by a key that is not the EOp's
        forger = generate_private_key()
        certs = [issue_certificate("subcmd", forger, w.ep, 0, 2**31 - 1).der]
    elif case == "wrong agent":
        agent = raw_public_key(generate_private_key())
    elif case == "wrong channel":
        chans = [key_id(generate_private_key())]
    r = check_subscription(certs, agent, chans, eop, b"")
    assert isinstance(r, Refusal) and r.status is Status.ESUBBADCHN, r
    assert r.reason


@pytest.mark.parametrize(
    ("chans", "dattr", "status"),
    [
        ([], b"", Status.ESUBBADCHL),
        ([b"p"] * 65, b"", Status.ESUBBADCHL),
        ([b"p"], b"hostid=a*;", Status.ESUBBADDA),  # no wildcards in dattr
        ([b"p"], b"a=1;a=2;", Status.ESUBBADDA),  # no repeated names
        ([b"p"], b"noterminator=1", Status.ESUBBADDA),
        ([b"p"], b"a=" + b"x" * 5000 + b";", Status.ESUBBADDA),
    ],
)
def test_subscribe_bad_chlist_and_dattr(chans: list[bytes], dattr: bytes, status: Status) -> None:
    r = check_subscription([], b"k" * 32, chans, ZERO, dattr)
    assert isinstance(r, Refusal) and r.status is status, r


def test_publish_private_channel_proven_by_the_exp_chain() -> None:
    w = make_world()
    xd = b"exp_priority=2;" + XD
    g = check_publication(w.exp_chain, w.xc_raw, [w.channel], w.eop_raw, xd)
    assert isinstance(g, PubGrant)
    assert g.priority == 2 and g.pub_end_ns is None


def test_publish_public_channel_without_chain() -> None:
    g = check_publication([], b"k" * 32, [b"public"], ZERO, XD)
    assert isinstance(g, PubGrant)


@pytest.mark.parametrize("case", ["no chain", "forged", "wrong channel", "wrong agent"])
def test_publish_private_refusals_are_epubbadchn(case: str) -> None:
    w = make_world()
    certs, agent, chans = w.exp_chain, w.xc_raw, [w.channel]
    if case == "no chain":
        certs = []
    elif case == "forged":
        forger = generate_private_key()
        certs = [w.pubcmd.der, issue_certificate("exppriv", forger, w.exper, 0, 2**31 - 1).der]
    elif case == "wrong channel":
        chans = [key_id(generate_private_key())]
    elif case == "wrong agent":
        agent = w.ep_raw
    r = check_publication(certs, agent, chans, w.eop_raw, XD)
    assert isinstance(r, Refusal) and r.status is Status.EPUBBADCHN, r


def test_publish_priority_above_the_chain_limit_is_epubbadpr() -> None:
    w = make_world(limits="max_num_priority=3;")
    ok = check_publication(w.exp_chain, w.xc_raw, [w.channel], w.eop_raw, b"exp_priority=3;" + XD)
    assert isinstance(ok, PubGrant)
    r = check_publication(w.exp_chain, w.xc_raw, [w.channel], w.eop_raw, b"exp_priority=4;" + XD)
    assert isinstance(r, Refusal) and r.status is Status.EPUBBADPR


@pytest.mark.parametrize(
    ("xdescr", "status"),
    [
        (b"sni_key=abc;", Status.EPUBBADADDR),  # no controller_addr
        (b"controller_addr=a:1;controller_addr=b:2;", Status.EPUBBADADDR),
        (b"controller_addr=h:99999;", Status.EPUBBADADDR),
        (b"controller_addr=h*;", Status.EPUBBADADDR),
        (b"exp_priority=x;" + XD, Status.EPUBBADPR),
        (b"exp_priority=4294967296;" + XD, Status.EPUBBADPR),
        (b"pub_end=abc;" + XD, Status.EPUBBADXD),
        (b"pub_end=1000000000;" + XD, Status.EPUBBADXD),  # 1970: already past
        (b"controller_addr=h;sni_key=UPPER;", Status.EPUBBADXD),
        # two SNIs: an endpoint takes one of them, which one is not said (ours the first)
        (XD + b"sni_key=def;", Status.EPUBBADXD),
        (b"controller_addr=h;bad value!=1;", Status.EPUBBADXD),
        (b"controller_addr=h;x=" + b"y" * MAX_XDESCR + b";", Status.EPUBBADXD),
    ],
)
def test_publish_bad_xdescr(xdescr: bytes, status: Status) -> None:
    r = check_publication([], b"k" * 32, [b"public"], ZERO, xdescr)
    assert isinstance(r, Refusal) and r.status is status, r


def test_publish_pub_end_in_future_and_bare_ipv6() -> None:
    end = time.time_ns() + 10**10
    g = check_publication([], b"k" * 32, [b"p"], ZERO, b"pub_end=%d;controller_addr=::1;" % end)
    assert isinstance(g, PubGrant) and g.pub_end_ns == end


def test_publish_empty_chlist_is_epubbadchl() -> None:
    r = check_publication([], b"k" * 32, [], ZERO, XD)
    assert isinstance(r, Refusal) and r.status is Status.EPUBBADCHL


def test_chains_as_sent_in_any_shape_are_read_as_the_reference_reads_them() -> None:
    """P §4.4: cert_ls[0] is the leaf, the parent of a cert is an unused cert whose SKI is
    its AKI, every cert within its validity. So a repeated cert or an extra one is left
    over (taken), the root first is refused, and an extra cert's AKI proves nothing: a
    channel it names is refused (bpaudit23)."""
    now = 1_000_000
    eop, eop2, ep, stranger = (generate_private_key() for _ in range(4))
    subcmd = issue_certificate("subcmd", eop2, ep, 0, 2**31 - 1).der
    delpriv = issue_certificate("delpriv", eop, eop2, 0, 2**31 - 1, del_type="reppriv").der
    extra = issue_certificate("subcmd", stranger, ep, 0, 2**31 - 1).der
    later = issue_certificate("subcmd", eop2, ep, now + 60, 2**31 - 1).der
    ended = issue_certificate("delpriv", eop, eop2, 0, now - 1, del_type="reppriv").der

    def sub(certs: list[bytes], chans: list[bytes]) -> SubGrant | Refusal:
        return check_subscription(certs, raw_public_key(ep), chans, raw_public_key(eop), b"", now)

    both = [key_id(eop), key_id(eop2)]
    assert isinstance(sub([subcmd, subcmd, delpriv, delpriv], both), SubGrant)
    assert isinstance(sub([subcmd, extra, delpriv], both), SubGrant)
    for certs, chans, rule in [
        ([subcmd, extra, delpriv], [key_id(stranger)], "not proven by the chain"),
        ([delpriv, subcmd], both, "wrong_cert_type: cert #0"),
        ([later, delpriv], both, "not_yet_valid: cert #0"),
        ([subcmd, ended], both, "expired: cert #1"),
    ]:
        r = sub(certs, chans)
        assert isinstance(r, Refusal) and r.status is Status.ESUBBADCHN and rule in r.reason, r
