"""PROTOCOL.md §4.4-§4.5 rule by rule (session 24): the rules no earlier test pinned.

docs/ppks.md "Session 24 (ppks24)" maps every rule to its test; this file holds the ones
that were unpinned. Chains are built by our issuer (`ppks_factory.cert`); what the
reference tool makes is in tests/integration/test_ppksman_interop.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ppks_factory import NOW, build, cert, pub, resign, std_exts, tlv

from packetlab.ppks import (
    Accounting,
    AuthMode,
    BurstRate,
    Certificate,
    CertType,
    ChainError,
    Counter,
    PPKSError,
    Reason,
    combine_limits,
    parse_certificate,
    verify_chain,
)
from packetlab.ppks import der as pder
from packetlab.ppks.limits import U64_MAX

CTRL = AuthMode.ENDPOINT_AUTH_CONTROLLER
ENDP = AuthMode.CONTROLLER_AUTH_ENDPOINT
AGENT = AuthMode.AGENT


def ctrl() -> list[Certificate]:
    """pubcmd(exper1 -> xc) <- delpriv(exper -> exper1) <- exppriv(eop -> exper)."""
    return [
        cert("pubcmd", "exper1", "xc"),
        cert("delpriv", "exper", "exper1", del_type="exppriv"),
        cert("exppriv", "eop", "exper"),
    ]


def refused(mode: AuthMode, chain: list[Certificate], roots: list[str], now: float) -> ChainError:
    with pytest.raises(ChainError) as e:
        verify_chain(mode, chain, [pub(r) for r in roots], now)
    return e.value


# -- §4.4 validity: notBefore <= now <= notAfter, for every cert, in whole seconds ---------


@pytest.mark.parametrize("position", [0, 1, 2])
def test_each_certs_window_is_inclusive_at_both_ends(position: int) -> None:
    """The boundary of one certificate (leaf, delpriv, exppriv), the others valid all
    along: now = notBefore and now = notAfter are valid; a second outside is refused with
    the index of that certificate."""
    lo, hi = NOW - 50, NOW + 50
    chain = ctrl()
    chain[position] = [
        lambda: cert("pubcmd", "exper1", "xc", nb=lo, na=hi),
        lambda: cert("delpriv", "exper", "exper1", del_type="exppriv", nb=lo, na=hi),
        lambda: cert("exppriv", "eop", "exper", nb=lo, na=hi),
    ][position]()
    for t in (lo, hi):
        assert len(verify_chain(CTRL, chain, [pub("eop")], t).certs) == 3
    e = refused(CTRL, chain, ["eop"], lo - 1)
    assert (e.reason, e.index) == (Reason.NOT_YET_VALID, position)
    e = refused(CTRL, chain, ["eop"], hi + 1)
    assert (e.reason, e.index) == (Reason.EXPIRED, position)


def test_now_counts_in_whole_seconds_like_the_references_time_t() -> None:
    """A chain is valid through the whole last second of notAfter: the reference compares
    certificate times (whole seconds) with a time_t now. Every caller of ours passes a
    float clock (time.time()), which refused from notAfter + 1 us on."""
    chain = [cert("pubcmd", "exper", "xc", na=NOW), cert("exppriv", "eop", "exper")]
    assert len(verify_chain(CTRL, chain, [pub("eop")], NOW + 0.999).certs) == 2
    e = refused(CTRL, chain, ["eop"], NOW + 1.0)
    assert (e.reason, e.index) == (Reason.EXPIRED, 0)
    early = [cert("pubcmd", "exper", "xc", nb=NOW), cert("exppriv", "eop", "exper")]
    e = refused(CTRL, early, ["eop"], NOW - 0.001)  # time_t: NOW - 1
    assert (e.reason, e.index) == (Reason.NOT_YET_VALID, 0)
    assert early[0].is_valid_at(NOW) and chain[0].is_valid_at(NOW + 0.5)
    assert not chain[0].is_valid_at(NOW + 1)


# -- §4.4 phases ------------------------------------------------------------------------


def test_a_controller_chain_cannot_end_at_a_delpriv_even_signed_by_a_root() -> None:
    """`delpriv x0..inf (must not end)`: pubcmd <- delpriv signed by a trusted EOp key,
    with no exppriv, is no experiment privilege."""
    chain = [cert("pubcmd", "exper1", "xc"), cert("delpriv", "eop", "exper1", del_type="exppriv")]
    e = refused(CTRL, chain, ["eop"], NOW)
    assert (e.reason, e.index) == (Reason.MISSING_PARENT, 1)
    e = refused(CTRL, chain, [], NOW)  # nor with any root
    assert (e.reason, e.index) == (Reason.MISSING_PARENT, 1)


@pytest.mark.parametrize("mode", [CTRL, ENDP])
def test_a_delpriv_delegating_both_privileges_fits_both_modes(mode: AuthMode) -> None:
    both = "exppriv,reppriv"
    if mode is CTRL:
        chain = ctrl()
        chain[1] = cert("delpriv", "exper", "exper1", del_type=both)
    else:
        chain = [cert("subcmd", "eop1", "ep"), cert("delpriv", "eop", "eop1", del_type=both)]
    assert len(verify_chain(mode, chain, [pub("eop")], NOW).certs) == len(chain)


def test_an_agent_chain_is_one_cert_long() -> None:
    """`agent x1 (must end)`: a broker cert signed by an intermediate that the BOp key
    signed is refused (its AKI is no root), not followed up the intermediate."""
    chain = [cert("agent", "mid", "brk"), cert("delpriv", "bop", "mid", del_type="exppriv")]
    e = refused(AGENT, chain, ["bop"], NOW)
    assert (e.reason, e.index) == (Reason.UNTRUSTED_ROOT, 0)


# -- §4.4 pathlen: a parent's pathlen (if present) >= certs below it - 1 -------------------


def test_a_delpriv_pathlen_counts_the_ca_certs_below_it() -> None:
    """pathlen on an intermediate delpriv, not only on the exppriv: 0 over the leaf is
    enough, 0 over another delpriv is exceeded (index of the delpriv with the pathlen)."""
    chain = [
        cert("pubcmd", "exper2", "xc"),
        cert("delpriv", "exper1", "exper2", del_type="exppriv"),
        cert("delpriv", "exper", "exper1", del_type="exppriv", pathlen=0),
        cert("exppriv", "eop", "exper"),
    ]
    e = refused(CTRL, chain, ["eop"], NOW)
    assert (e.reason, e.index) == (Reason.PATHLEN_EXCEEDED, 2)
    chain[2] = cert("delpriv", "exper", "exper1", del_type="exppriv", pathlen=1)
    assert len(verify_chain(CTRL, chain, [pub("eop")], NOW).certs) == 4
    short = [chain[0], cert("delpriv", "exper", "exper2", del_type="exppriv", pathlen=0), chain[3]]
    assert len(verify_chain(CTRL, short, [pub("eop")], NOW).certs) == 3


def test_an_exppriv_pathlen_counts_every_delpriv_below_it() -> None:
    chain = [
        cert("pubcmd", "exper2", "xc"),
        cert("delpriv", "exper1", "exper2", del_type="exppriv"),
        cert("delpriv", "exper", "exper1", del_type="exppriv"),
        cert("exppriv", "eop", "exper", pathlen=1),
    ]
    e = refused(CTRL, chain, ["eop"], NOW)
    assert (e.reason, e.index) == (Reason.PATHLEN_EXCEEDED, 3)
    chain[3] = cert("exppriv", "eop", "exper", pathlen=2)
    assert len(verify_chain(CTRL, chain, [pub("eop")], NOW).certs) == 4


def test_pathlen_in_an_endpoint_chain() -> None:
    """In CONTROLLER_AUTH_ENDPOINT the chain may end at any delpriv: a pathlen that the
    longer chain exceeds leaves the shorter one valid (the longest valid chain)."""
    chain = [
        cert("subcmd", "eop2", "ep"),
        cert("delpriv", "eop1", "eop2", del_type="reppriv"),
        cert("delpriv", "eop", "eop1", del_type="reppriv", pathlen=0),
    ]
    e = refused(ENDP, chain, ["eop"], NOW)
    assert (e.reason, e.index) == (Reason.PATHLEN_EXCEEDED, 2)
    v = verify_chain(ENDP, chain, [pub("eop"), pub("eop1")], NOW)
    assert v.indices == (0, 1) and v.root_index == 1


# -- §4.4 the longest valid chain, and the root it ends at ---------------------------------


def test_the_longest_chain_wins_and_names_its_root() -> None:
    chain = [
        cert("subcmd", "eop2", "ep"),
        cert("delpriv", "eop1", "eop2", del_type="reppriv"),
        cert("delpriv", "eop", "eop1", del_type="reppriv"),
    ]
    for roots, length, index in (
        (["eop2", "eop1", "eop"], 3, 2),
        (["eop", "eop2"], 3, 0),
        (["eop2", "x"], 1, 0),
        (["x", "eop1"], 2, 1),
    ):
        v = verify_chain(ENDP, chain, [pub(r) for r in roots], NOW)
        assert (len(v.certs), v.root_index) == (length, index), roots


def test_a_broken_link_above_does_not_spoil_a_shorter_valid_chain() -> None:
    """A forged delpriv above a rooted one: the chain up to the trusted root is still
    returned (the reference returns the longest *valid* chain)."""
    chain = [
        cert("subcmd", "eop1", "ep"),
        cert("delpriv", "eop", "eop1", del_type="reppriv"),
    ]
    forged = parse_certificate(
        resign(cert("delpriv", "eop0", "eop", del_type="reppriv").der, "mallory")
    )
    v = verify_chain(ENDP, [*chain, forged], [pub("eop"), pub("eop0")], NOW)
    assert v.indices == (0, 1) and v.root_index == 0
    e = refused(ENDP, [*chain, forged], ["eop0"], NOW)  # only the far root: nothing valid
    assert (e.reason, e.index) == (Reason.BAD_ROOT_SIGNATURE, 2)


# -- §4.5 limits: zero, maximal values, overflow -----------------------------------------------

DECIMALS = (
    "max_num_priority",
    "max_socket_count",
    "max_exp_period",
    "max_send_byte",
    "max_send_pkt",
    "max_recv_byte",
    "max_recv_pkt",
)


@pytest.mark.parametrize("name", DECIMALS)
def test_each_decimal_limit_takes_u64_max_and_refuses_one_more(name: str) -> None:
    """Every decimal field is a u64: 2^64 - 1 is taken as it is, 2^64 is refused with
    bad_decimal naming the field (ppksman writes either: it checks digits only)."""
    c = cert("exppriv", "eop", "exper", limits=f"{name}={U64_MAX};")
    assert c.limits is not None and getattr(c.limits, name) == U64_MAX
    assert getattr(combine_limits([c]), name) == U64_MAX
    with pytest.raises(PPKSError) as e:
        cert("exppriv", "eop", "exper", limits=f"{name}={U64_MAX + 1};")
    assert e.value.reason is Reason.BAD_DECIMAL, e.value
    assert name in str(e.value)


@pytest.mark.parametrize("name", ["max_burst_rate_byte", "max_burst_rate_pkt"])
def test_burst_windows_take_u64_max_and_refuse_one_more(name: str) -> None:
    c = cert("exppriv", "eop", "exper", limits=f"{name}={U64_MAX}/{U64_MAX};")
    assert c.limits is not None and getattr(c.limits, name) == (BurstRate(U64_MAX, U64_MAX),)
    for text in (f"{U64_MAX + 1}/1", f"1/{U64_MAX + 1}"):
        with pytest.raises(PPKSError) as e:
            cert("exppriv", "eop", "exper", limits=f"{name}={text};")
        assert e.value.reason is Reason.BAD_BURST_RATE, e.value


def test_zero_is_a_limit_not_unlimited() -> None:
    """0 is the tightest value of every field (absent is unlimited): the minimum over a
    chain keeps it, priority 0 alone is allowed, a 0-count window admits nothing."""
    chain = [
        cert("pubcmd", "exper1", "xc"),
        cert(
            "delpriv",
            "exper",
            "exper1",
            del_type="exppriv",
            limits="max_send_byte=0;max_num_priority=0;max_socket_count=0;"
            "max_burst_rate_pkt=0/1000;",
        ),
        cert("exppriv", "eop", "exper", limits="max_send_byte=500;max_num_priority=9;"),
    ]
    lim = combine_limits(chain)
    assert (lim.max_send_byte, lim.max_num_priority, lim.max_socket_count) == (0, 0, 0)
    assert lim.priority_allowed(0) and not lim.priority_allowed(1)
    assert lim.burst_rate_pkt == (BurstRate(0, 1000),)


def test_a_zero_quota_is_spent_before_the_first_byte(tmp_path: Path) -> None:
    chain = [
        cert("pubcmd", "exper", "xc"),
        cert("exppriv", "eop", "exper", limits="max_send_byte=0;"),
    ]
    with Accounting(tmp_path / "a.db", clock=lambda: NOW) as acct:
        budget = acct.budget(chain)
        assert budget.remaining(Counter.SEND_BYTE) == 0
        assert budget.reserve(Counter.SEND_BYTE, 1) == 0


def test_u64_max_quotas_are_kept_as_the_largest_signed_64_bit_amount(tmp_path: Path) -> None:
    """SQLite integers are signed 64-bit: a u64-max quota is clamped to 2^63 - 1 (more
    than 290 years of runtime in ns), never an OverflowError at session start."""
    big = f"max_send_byte={U64_MAX};max_exp_period={U64_MAX};"
    chain = [
        cert("pubcmd", "exper", "xc"),
        cert("exppriv", "eop", "exper", limits=big),
    ]
    with Accounting(tmp_path / "a.db", clock=lambda: NOW) as acct:
        budget = acct.budget(chain)
        assert budget.remaining(Counter.SEND_BYTE) == 2**63 - 1
        assert budget.reserve(Counter.SEND_BYTE, 2**62) == 2**62
        assert budget.remaining(Counter.SEND_BYTE) == 2**63 - 1 - 2**62
        assert budget.remaining(Counter.RUNTIME) == 2**63 - 1


def test_limits_of_certs_outside_the_verified_chain_are_not_applied() -> None:
    """`Limits come only from the exppriv and delpriv certs of the controller chain`: a
    presented CA cert that the chain does not use (here a second exppriv from an
    untrusted key) adds nothing once the endpoint combines the verified chain."""
    good = [
        cert("pubcmd", "exper", "xc"),
        cert("exppriv", "eop", "exper", limits="max_send_byte=9;"),
    ]
    stray = cert("exppriv", "other", "exper", limits="max_send_byte=1;monitor=" + "ab" * 32 + ";")
    v = verify_chain(CTRL, [good[0], stray, good[1]], [pub("eop")], NOW)
    assert v.indices == (0, 2)
    lim = combine_limits(v.certs)
    assert lim.max_send_byte == 9 and lim.monitor_digests == ()


# -- §4.3 rules the chain relies on: the Ed25519 algorithm identifier, decimal forms --------

_ED25519 = bytes.fromhex("300506032b6570")
_ED25519_NULL = bytes.fromhex("300706032b65700500")  # parameters present (NULL)


def _with_null_params(where: str) -> bytes:
    """A good pubcmd whose Ed25519 AlgorithmIdentifier carries NULL parameters in one
    place (RFC 8410 says absent; OpenSSL's Ed25519 verify refuses them), signed again."""
    der = cert("pubcmd", "exper", "xc").der

    def fields(f: list[bytes]) -> list[bytes]:
        if where == "tbs":
            f[2] = _ED25519_NULL
        elif where == "spki":
            f[6] = tlv(0x30, _ED25519_NULL + f[6][2 + len(_ED25519) :])
        return f

    signed = resign(der, "exper", mutate_fields=fields)
    if where != "outer":
        return signed
    top = pder.children(pder.read_single(signed, pder.SEQUENCE).value)
    return tlv(0x30, top[0].raw + _ED25519_NULL + top[2].raw)


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("outer", Reason.BAD_SIGNATURE_ALGORITHM),
        ("tbs", Reason.BAD_SIGNATURE_ALGORITHM),
        ("spki", Reason.BAD_PUBLIC_KEY),
    ],
)
def test_ed25519_with_parameters_is_refused(where: str, reason: Reason) -> None:
    chain = [_with_null_params(where), cert("exppriv", "eop", "exper").der]
    with pytest.raises(ChainError) as e:
        verify_chain(CTRL, chain, [pub("eop")], NOW)
    assert (e.value.reason, e.value.index) == (reason, 0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("3", None),
        ("0003", None),
        (" 3", Reason.BAD_DECIMAL),  # ppksman: digits only
        ("3 ", Reason.BAD_DECIMAL),
        ("0x3", Reason.BAD_DECIMAL),
        ("3.0", Reason.BAD_DECIMAL),
        ("-3", Reason.BAD_DECIMAL),
        ("+3", Reason.BAD_CERT_LIMIT_SYNTAX),  # '+' is no value character
        ("\u0663", Reason.BAD_CERT_LIMIT_SYNTAX),  # an Arabic-Indic 3: not ASCII
    ],
)
def test_priority_string_forms(value: str, reason: Reason | None) -> None:
    """max_num_priority (as every decimal field) is ASCII digits: leading zeros count
    for nothing; a sign, a space, a point or another script's digit is refused."""
    limit = f"max_num_priority={value};".encode()
    der = build("eop", "exper", std_exts(CertType.EXPPRIV, "eop", "exper", limit=limit))
    if reason is None:
        c = parse_certificate(der)
        assert c.limits is not None and c.limits.max_num_priority == 3
        return
    with pytest.raises(PPKSError) as e:
        parse_certificate(der)
    assert e.value.reason is reason, e.value
