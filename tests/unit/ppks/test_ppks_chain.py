"""Chain validation (§4.4): valid shapes in every mode, and one refused chain per rule."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from ppks_factory import NA, NB, NOW, build, cert, good, key, pub, resign, std_exts, tlv

from packetlab.ppks import (
    AuthMode,
    Certificate,
    CertType,
    ChainError,
    Reason,
    key_id,
    parse_certificate,
    parse_controller_exp_chain,
    parse_endpoint_rep_chain,
    verify_chain,
)
from packetlab.ppks.verify import MAX_CHAIN_CERTS

CTRL = AuthMode.ENDPOINT_AUTH_CONTROLLER
ENDP = AuthMode.CONTROLLER_AUTH_ENDPOINT
AGENT = AuthMode.AGENT


def controller_chain(n_del: int, **exppriv_kw: Any) -> list[Certificate]:
    """pubcmd(exper_n -> xc), delpriv(exper_{i-1} -> exper_i)..., exppriv(eop -> exper_0)."""
    names = ["exper"] + [f"exper{i}" for i in range(1, n_del + 1)]
    chain = [cert("pubcmd", names[-1], "xc")]
    for i in range(n_del, 0, -1):
        chain.append(cert("delpriv", names[i - 1], names[i], del_type="exppriv"))
    chain.append(cert("exppriv", "eop", "exper", **exppriv_kw))
    return chain


def endpoint_chain(n_del: int) -> list[Certificate]:
    names = ["eop"] + [f"eop{i}" for i in range(1, n_del + 1)]
    chain = [cert("subcmd", names[-1], "ep")]
    for i in range(n_del, 0, -1):
        chain.append(cert("delpriv", names[i - 1], names[i], del_type="reppriv"))
    return chain


@pytest.mark.parametrize("n_del", [0, 1, 2, 5])
def test_controller_chains(n_del: int) -> None:
    chain = controller_chain(n_del)
    v = verify_chain(CTRL, chain, [pub("eop")], NOW)
    assert [c.der for c in v.certs] == [c.der for c in chain]
    assert v.root_index == 0 and v.leaf is chain[0] and v.top is chain[-1]
    info = parse_controller_exp_chain(chain, pub("xc"), [pub("eop")], NOW)
    assert info.channel == key_id(key("eop"))
    assert len(info.certs) == n_del + 2


def test_controller_chain_any_order_and_der_input() -> None:
    chain = controller_chain(3)
    rest = chain[1:]
    random.Random(7).shuffle(rest)
    v = verify_chain(CTRL, [chain[0].der, *(c.der for c in rest)], [pub("other"), pub("eop")], NOW)
    assert [c.cert_type for c in v.certs] == [
        CertType.PUBCMD,
        CertType.DELPRIV,
        CertType.DELPRIV,
        CertType.DELPRIV,
        CertType.EXPPRIV,
    ]
    assert v.root_index == 1


def test_unrelated_extra_certs_are_ignored() -> None:
    chain = controller_chain(0)
    extra = cert("agent", "zz", "zz")
    v = verify_chain(CTRL, [*chain, extra], [pub("eop")], NOW)
    assert len(v.certs) == 2 and v.indices == (0, 1)


def test_no_roots_accepts_any_root_but_checks_form() -> None:
    chain = controller_chain(1)
    v = verify_chain(CTRL, chain, [], NOW)
    assert v.root_index is None and len(v.certs) == 3
    # with no roots the top signature is not checked (reference behaviour)
    top = resign(chain[-1].der, "mallory")
    assert verify_chain(CTRL, [*chain[:-1], top], [], NOW).root_index is None


@pytest.mark.parametrize("n_del", [0, 1, 3])
def test_endpoint_chains(n_del: int) -> None:
    chain = endpoint_chain(n_del)
    v = verify_chain(ENDP, chain, [pub("eop")], NOW)
    assert len(v.certs) == n_del + 1
    info = parse_endpoint_rep_chain(chain, pub("ep"), [pub("eop")], NOW)
    assert info.channels == tuple(c.authority_key_id for c in chain)
    assert info.channels[-1] == key_id(key("eop"))


def test_endpoint_chain_longest_wins_without_roots() -> None:
    chain = endpoint_chain(2)
    assert len(verify_chain(ENDP, chain, [], NOW).certs) == 3


def test_endpoint_chain_ends_where_root_is() -> None:
    # Roots = the intermediate operator: the subcmd chain ends at the delpriv it signed.
    chain = endpoint_chain(2)
    v = verify_chain(ENDP, chain, [pub("eop1")], NOW)
    assert len(v.certs) == 2


def test_agent_modes() -> None:
    self_signed = cert("agent", "xc", "xc")
    assert verify_chain(AGENT, [self_signed], [pub("xc")], NOW).root_index == 0
    assert verify_chain(AGENT, [self_signed], [], NOW).root_index is None
    broker = cert("agent", "bop", "brk")
    assert verify_chain(AGENT, [broker], [pub("bop")], NOW).root_index == 0
    with pytest.raises(ChainError) as e:
        verify_chain(AGENT, [self_signed], [pub("bop")], NOW)
    assert e.value.reason is Reason.UNTRUSTED_ROOT


def test_no_verify_accepts_anything() -> None:
    v = verify_chain(AuthMode.NO_VERIFY, [b"garbage"], [], NOW)
    assert v.certs == () and v.root_index is None


def test_pathlen_exactly_enough() -> None:
    # exppriv with pathlen 1 over one delpriv: allowed (1 >= 2 - 1).
    chain = controller_chain(1, pathlen=1)
    assert len(verify_chain(CTRL, chain, [pub("eop")], NOW).certs) == 3
    chain = controller_chain(0, pathlen=0)
    assert len(verify_chain(CTRL, chain, [pub("eop")], NOW).certs) == 2


def test_validity_bounds_are_inclusive() -> None:
    chain = controller_chain(0)
    verify_chain(CTRL, chain, [pub("eop")], NB)
    verify_chain(CTRL, chain, [pub("eop")], NA)


def test_default_now_is_the_clock() -> None:
    chain = [
        cert("pubcmd", "exper", "xc", nb=0, na=2**31 - 1),
        cert("exppriv", "eop", "exper", nb=0, na=2**31 - 1),
    ]
    assert len(verify_chain(CTRL, chain, [pub("eop")]).certs) == 2


# -- refused chains, one per rule ----------------------------------------------------


def _bad_sig_leaf() -> list[Certificate | bytes]:
    chain = controller_chain(0)
    return [resign(chain[0].der, "mallory"), chain[1]]


def _bad_root_sig() -> list[Certificate | bytes]:
    chain = controller_chain(0)
    return [chain[0], resign(chain[1].der, "mallory")]


def _expired_mid() -> list[Certificate | bytes]:
    c = controller_chain(1)
    return [c[0], cert("delpriv", "exper", "exper1", del_type="exppriv", na=NOW - 1), c[2]]


def _limit_on_leaf() -> list[Certificate | bytes]:
    leaf = build("exper", "xc", std_exts(CertType.PUBCMD, "exper", "xc", limit=b"max_send_byte=1;"))
    return [leaf, cert("exppriv", "eop", "exper")]


def _ca_leaf() -> list[Certificate | bytes]:
    from cryptography import x509

    exts = std_exts(CertType.PUBCMD, "exper", "xc")
    exts[3] = (x509.BasicConstraints(True, None), True)
    return [build("exper", "xc", exts), cert("exppriv", "eop", "exper")]


def _borrowed_signature() -> list[Certificate | bytes]:
    """The leaf's signed bytes with the signature of another certificate by the same
    signer (a valid signature, over other bytes)."""
    leaf, other = cert("pubcmd", "exper", "xc"), cert("pubcmd", "exper", "xc2")
    body = (
        leaf.tbs + tlv(0x30, tlv(0x06, bytes.fromhex("2b6570"))) + tlv(3, b"\0" + other.signature)
    )
    return [tlv(0x30, body), cert("exppriv", "eop", "exper")]


CHAIN_CORPUS: dict[
    str, tuple[AuthMode, Callable[[], Sequence[Certificate | bytes]], list[str], Reason, int | None]
] = {
    "empty": (CTRL, lambda: [], ["eop"], Reason.EMPTY_CHAIN, None),
    "too many": (
        CTRL,
        lambda: [cert("pubcmd", "exper", "xc")] * (MAX_CHAIN_CERTS + 1),
        ["eop"],
        Reason.TOO_MANY_CERTS,
        None,
    ),
    "malformed member": (
        CTRL,
        lambda: [cert("pubcmd", "exper", "xc"), b"\x30\x00"],
        ["eop"],
        Reason.MALFORMED_DER,
        1,
    ),
    "bad signature": (CTRL, _bad_sig_leaf, ["eop"], Reason.BAD_SIGNATURE, 0),
    "AKI/SKI mismatch (no parent)": (
        CTRL,
        lambda: [cert("pubcmd", "exper2", "xc"), cert("exppriv", "eop", "exper")],
        ["eop"],
        Reason.MISSING_PARENT,
        0,
    ),
    "pubcmd alone must not end": (
        CTRL,
        lambda: [cert("pubcmd", "exper", "xc")],
        ["exper"],
        Reason.MISSING_PARENT,
        0,
    ),
    "leaf of wrong type": (
        CTRL,
        lambda: [cert("exppriv", "eop", "exper"), cert("pubcmd", "exper", "xc")],
        ["eop"],
        Reason.WRONG_CERT_TYPE,
        0,
    ),
    "wrong phase order (exppriv below delpriv)": (
        CTRL,
        lambda: [
            cert("pubcmd", "exper1", "xc"),
            cert("exppriv", "exper", "exper1"),
            cert("delpriv", "eop", "exper", del_type="exppriv"),
        ],
        ["eop"],
        Reason.UNTRUSTED_ROOT,  # exppriv must end the chain: what is above is never used
        1,
    ),
    "wrong phase order (pubcmd above pubcmd)": (
        CTRL,
        lambda: [
            cert("pubcmd", "exper1", "xc"),
            cert("pubcmd", "exper", "exper1"),
            cert("exppriv", "eop", "exper"),
        ],
        ["eop"],
        Reason.WRONG_CERT_TYPE,
        1,
    ),
    "subcmd as parent of pubcmd": (
        CTRL,
        lambda: [cert("pubcmd", "exper", "xc"), cert("subcmd", "eop", "exper")],
        ["eop"],
        Reason.WRONG_CERT_TYPE,
        1,
    ),
    "delpriv reppriv in controller chain": (
        CTRL,
        lambda: [
            cert("pubcmd", "exper1", "xc"),
            cert("delpriv", "exper", "exper1", del_type="reppriv"),
            cert("exppriv", "eop", "exper"),
        ],
        ["eop"],
        Reason.DEL_TYPE_NOT_EXPPRIV,
        1,
    ),
    "delpriv exppriv in endpoint chain": (
        ENDP,
        lambda: [cert("subcmd", "eop1", "ep"), cert("delpriv", "eop", "eop1", del_type="exppriv")],
        ["eop"],
        Reason.DEL_TYPE_NOT_REPPRIV,
        1,
    ),
    "pathlen exceeded": (
        CTRL,
        lambda: controller_chain(1, pathlen=0),
        ["eop"],
        Reason.PATHLEN_EXCEEDED,
        2,
    ),
    "leaf expired": (
        CTRL,
        lambda: [cert("pubcmd", "exper", "xc", na=NOW - 1), cert("exppriv", "eop", "exper")],
        ["eop"],
        Reason.EXPIRED,
        0,
    ),
    "intermediate expired": (CTRL, _expired_mid, ["eop"], Reason.EXPIRED, 1),
    "top not yet valid": (
        CTRL,
        lambda: [cert("pubcmd", "exper", "xc"), cert("exppriv", "eop", "exper", nb=NOW + 1)],
        ["eop"],
        Reason.NOT_YET_VALID,
        1,
    ),
    "untrusted root": (CTRL, lambda: controller_chain(0), ["exper"], Reason.UNTRUSTED_ROOT, 1),
    "bad root signature": (CTRL, _bad_root_sig, ["eop"], Reason.BAD_ROOT_SIGNATURE, 1),
    "endpoint untrusted root": (
        ENDP,
        lambda: endpoint_chain(1),
        ["other"],
        Reason.UNTRUSTED_ROOT,
        1,
    ),
    "agent wrong type": (
        AGENT,
        lambda: [cert("pubcmd", "xc", "xc")],
        [],
        Reason.WRONG_CERT_TYPE,
        0,
    ),
    "cert_limit on leaf": (CTRL, _limit_on_leaf, ["eop"], Reason.CERT_LIMIT_ON_LEAF, 0),
    "CA flag on leaf": (CTRL, _ca_leaf, ["eop"], Reason.CA_ON_LEAF, 0),
    # a tester's forgeries (session 20): each refused naming the cert and the rule
    "signature of another cert over these bytes": (
        CTRL,
        _borrowed_signature,
        ["eop"],
        Reason.BAD_SIGNATURE,
        0,
    ),
    "a leaf signing a leaf": (
        CTRL,
        lambda: [
            cert("pubcmd", "xc", "xc2"),
            cert("pubcmd", "exper", "xc"),
            cert("exppriv", "eop", "exper"),
        ],
        ["eop"],
        Reason.WRONG_CERT_TYPE,
        1,
    ),
    "delegation loop (a -> b -> a)": (
        CTRL,
        lambda: [
            cert("pubcmd", "a", "xc"),
            cert("delpriv", "a", "b", del_type="exppriv"),
            cert("delpriv", "b", "a", del_type="exppriv"),
        ],
        ["eop"],
        Reason.CHAIN_LOOP,  # it said missing_parent: the parent is there, below
        1,
    ),
    "missing cert_info": (
        AGENT,
        lambda: [build("xc", "xc", std_exts(CertType.AGENT, "xc", "xc")[:4])],
        [],
        Reason.MISSING_CERT_INFO,
        0,
    ),
}


@pytest.mark.parametrize("case", sorted(CHAIN_CORPUS))
def test_refused_chain(case: str) -> None:
    mode, make, roots, reason, index = CHAIN_CORPUS[case]
    with pytest.raises(ChainError) as e:
        verify_chain(mode, make(), [pub(r) for r in roots], NOW)
    assert e.value.reason is reason, str(e.value)
    assert e.value.index == index, str(e.value)


def test_a_chain_out_of_its_validity_names_the_date() -> None:
    """A peer's expired certificate was refused with `expired at 1000` (seconds since
    1970: the proxy's, broker's and xpmgr's refusal lines), where the daemons' own
    start-up checks print the date; now both."""
    chain = [cert("pubcmd", "exper", "xc", nb=0, na=1000), cert("exppriv", "eop", "exper")]
    with pytest.raises(ChainError, match=r"expired at 1970-01-01T00:16:40Z \(1000\)"):
        verify_chain(CTRL, chain, [pub("eop")], NOW)
    chain = [cert("pubcmd", "exper", "xc", nb=NOW + 60), cert("exppriv", "eop", "exper")]
    with pytest.raises(ChainError, match=r"valid from 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ \("):
        verify_chain(CTRL, chain, [pub("eop")], NOW)


def test_helpers_check_the_leaf_key() -> None:
    with pytest.raises(ChainError) as e:
        parse_controller_exp_chain(controller_chain(0), pub("other"), [pub("eop")], NOW)
    assert e.value.reason is Reason.LEAF_KEY_MISMATCH
    with pytest.raises(ChainError) as e:
        parse_endpoint_rep_chain(endpoint_chain(0), pub("xc"), [pub("eop")], NOW)
    assert e.value.reason is Reason.LEAF_KEY_MISMATCH


def test_duplicate_ski_candidates_are_all_tried() -> None:
    # Two certs share the subject key of exper: a reppriv delpriv (unusable here) and the
    # exppriv. The search must not stop at the first.
    wrong = cert("delpriv", "eop", "exper", del_type="reppriv")
    chain = [cert("pubcmd", "exper", "xc"), wrong, cert("exppriv", "eop", "exper")]
    assert verify_chain(CTRL, chain, [pub("eop")], NOW).indices == (0, 2)


def test_self_signed_cycles_terminate() -> None:
    a = parse_certificate(good(CertType.DELPRIV, "exper", "exper"))
    chain = [cert("pubcmd", "exper", "xc"), a, a, a]
    with pytest.raises(ChainError) as e:
        verify_chain(CTRL, chain, [pub("eop")], NOW)
    assert e.value.reason is Reason.CHAIN_LOOP, str(e.value)


def _counting(certs: Sequence[Certificate], calls: list[int]) -> list[Certificate]:
    """The same certificates, counting every signature check made on them."""

    @dataclasses.dataclass(frozen=True, eq=False)
    class Counting(Certificate):
        def signed_by(self, signer_public_key: bytes) -> bool:
            calls[0] += 1
            return super().signed_by(signer_public_key)

    return [Counting(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)}) for c in certs]


@pytest.mark.parametrize("roots", [["eop"], []])
def test_a_delegation_loop_costs_one_signature_check_per_cert(roots: list[str]) -> None:
    # 31 delpriv certs that all delegate k_loop to itself: every one is a candidate parent
    # of every other, so the search walks thousands of paths (capped). A broker runs this
    # on its reactor for any client's xsub/xpub: it checked a signature on every step
    # (~10,000 Ed25519 verifications, over a second of CPU per xsub). One cert has one
    # possible signer (the key whose id is its AKI), so each signature is checked once.
    loop = [cert("delpriv", "loop", "loop", del_type="reppriv") for _ in range(MAX_CHAIN_CERTS - 1)]
    calls = [0]
    chain = _counting([cert("subcmd", "loop", "ep"), *loop], calls)
    try:
        verify_chain(ENDP, chain, [pub(r) for r in roots], NOW)
    except ChainError as e:
        assert roots and e.reason is Reason.UNTRUSTED_ROOT
    else:
        assert not roots
    assert calls[0] <= len(chain) * (1 + len(roots))
