"""Chain validation (PROTOCOL.md §4.4): the reference phase machine, in Python.

`certs[0]` is the leaf; the others may come in any order. The parent of a cert is an unused
cert whose SKI equals the child's AKI. Each mode is a list of phases (certificate type,
how many, whether the chain may end there). Where the chain may end, its top must be
signed by a root key whose key id equals the top's AKI; with no roots, any root is taken
(only the form is checked). The longest valid chain wins.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .cert import Certificate, CertType, DelType, parse_certificate
from .errors import CertificateError, ChainError, Reason
from .keys import PublicKeyLike, key_id, raw_public_key

__all__ = [
    "MAX_CHAIN_CERTS",
    "AuthMode",
    "EndpointChainInfo",
    "ExpChainInfo",
    "VerifiedChain",
    "parse_controller_exp_chain",
    "parse_endpoint_rep_chain",
    "verify_chain",
]

MAX_CHAIN_CERTS = 32  # bound on what a peer can make us look at
_MAX_STEPS = 1_000  # bound on the search when several certs share an SKI (loops)


class AuthMode(enum.IntEnum):
    """Verification modes; values are the reference enum."""

    CONTROLLER_AUTH_ENDPOINT = 0  # a controller checks an endpoint's subcmd chain
    ENDPOINT_AUTH_CONTROLLER = 1  # an endpoint checks a controller's pubcmd->exppriv chain
    AGENT = 2  # broker/proxy TLS links
    NO_VERIFY = 127


class _End(enum.Enum):
    MUST_NOT = 0
    MAY = 1
    MUST = 2


@dataclass(frozen=True)
class _Phase:
    cert_type: CertType
    min: int
    max: int | None  # None = unbounded
    end: _End
    del_type: DelType = DelType.NONE  # required flag for delpriv phases


_PHASES: dict[AuthMode, tuple[_Phase, ...]] = {
    AuthMode.ENDPOINT_AUTH_CONTROLLER: (
        _Phase(CertType.PUBCMD, 1, 1, _End.MUST_NOT),
        _Phase(CertType.DELPRIV, 0, None, _End.MUST_NOT, DelType.EXPPRIV),
        _Phase(CertType.EXPPRIV, 1, 1, _End.MUST),
    ),
    AuthMode.CONTROLLER_AUTH_ENDPOINT: (
        _Phase(CertType.SUBCMD, 1, 1, _End.MAY),
        _Phase(CertType.DELPRIV, 0, None, _End.MUST, DelType.REPPRIV),
    ),
    AuthMode.AGENT: (_Phase(CertType.AGENT, 1, 1, _End.MUST),),
}


@dataclass(frozen=True)
class VerifiedChain:
    """A valid chain, leaf first, and which root signed its top (None: no roots given)."""

    certs: tuple[Certificate, ...]
    root_index: int | None
    indices: tuple[int, ...]  # positions of `certs` in the list given

    @property
    def leaf(self) -> Certificate:
        return self.certs[0]

    @property
    def top(self) -> Certificate:
        return self.certs[-1]


class _Failure:
    """Keeps the failure found deepest in the chain: the most telling one to report."""

    def __init__(self) -> None:
        self.depth = -1
        self.error: ChainError | None = None

    def note(self, depth: int, error: ChainError) -> None:
        if depth > self.depth:
            self.depth, self.error = depth, error


def _when(seconds: int) -> str:
    """A certificate time for a refusal line: the UTC date and the number (a peer's
    refusal said `expired at 1000`), or the number alone past what a date can show."""
    import datetime

    try:
        date = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return str(seconds)
    return f"{date:%Y-%m-%dT%H:%M:%SZ} ({seconds})"


def _coerce_certs(certs: Sequence[Certificate | bytes]) -> list[Certificate]:
    out = []
    for i, c in enumerate(certs):
        if isinstance(c, Certificate):
            out.append(c)
            continue
        try:
            out.append(parse_certificate(bytes(c)))
        except CertificateError as e:
            raise ChainError(e.reason, e.detail, index=i) from None
    return out


def _no_parent(parsed: Sequence[Certificate], path: list[int]) -> ChainError:
    """Why the top of `path` has no parent: none was given, or the one whose SKI is its
    AKI is already below it (a loop, which said `missing_parent` though it was there)."""
    cur = parsed[path[-1]]
    below = [i for i in path if parsed[i].subject_key_id == cur.authority_key_id]
    if below:
        return ChainError(
            Reason.CHAIN_LOOP,
            f"its issuer (SKI = its AKI) is cert #{below[0]}, already below it in the chain",
            index=path[-1],
        )
    return ChainError(
        Reason.MISSING_PARENT,
        f"no cert with SKI = AKI of this {cur.cert_type.label} cert",
        index=path[-1],
    )


def _next_phases(phases: Sequence[_Phase], pi: int, count: int) -> list[tuple[int, int]]:
    """(phase index, count in it) states that the next cert (one step up) may take."""
    out = []
    cur = phases[pi]
    if cur.max is None or count < cur.max:
        out.append((pi, count + 1))
    if count >= cur.min:
        j = pi + 1
        while j < len(phases):
            out.append((j, 1))
            if phases[j].min > 0:
                break
            j += 1
    return out


def _may_end_here(phases: Sequence[_Phase], pi: int, count: int) -> bool:
    """Can the chain stop at a cert in phase `pi` (the `count`-th of it)?"""
    if phases[pi].end is _End.MUST_NOT or count < phases[pi].min:
        return False
    return all(p.min == 0 for p in phases[pi + 1 :])


def _must_end_here(phases: Sequence[_Phase], pi: int, count: int) -> bool:
    return not _next_phases(phases, pi, count)


def _check_type(phase: _Phase, cert: Certificate, index: int) -> ChainError | None:
    if cert.cert_type is not phase.cert_type:
        return ChainError(
            Reason.WRONG_CERT_TYPE,
            f"{cert.cert_type.label} where {phase.cert_type.label} is expected",
            index=index,
        )
    if phase.del_type and phase.del_type not in cert.del_type:
        reason = (
            Reason.DEL_TYPE_NOT_EXPPRIV
            if phase.del_type is DelType.EXPPRIV
            else Reason.DEL_TYPE_NOT_REPPRIV
        )
        return ChainError(
            reason,
            f"delpriv del_type={cert.del_type.label!r} lacks {phase.del_type.label}",
            index=index,
        )
    return None


def verify_chain(
    mode: AuthMode | int,
    certs: Sequence[Certificate | bytes],
    roots: Sequence[PublicKeyLike] = (),
    now: float | None = None,
) -> VerifiedChain:
    """Validate `certs` (leaf first; DER bytes or parsed) in `mode` (§4.4).

    `roots` are trusted public keys (raw 32 bytes or key objects); empty means any root.
    `now` is Unix seconds (default: the current time), taken in whole seconds (floored)
    as the reference's time_t. Returns the longest valid chain;
    raises `ChainError` naming the rule broken (the failure found deepest in the search).
    """
    mode = AuthMode(mode)
    if mode is AuthMode.NO_VERIFY:
        return VerifiedChain((), None, ())
    if not certs:
        raise ChainError(Reason.EMPTY_CHAIN, "no certificate given")
    if len(certs) > MAX_CHAIN_CERTS:
        raise ChainError(
            Reason.TOO_MANY_CERTS, f"{len(certs)} certificates (max {MAX_CHAIN_CERTS})"
        )
    parsed = _coerce_certs(certs)
    # Whole seconds, as the reference's time_t `now`: certificate times are whole seconds
    # and the check is inclusive (notBefore <= now <= notAfter), so a chain is valid
    # through the whole last second of its notAfter. A float clock (every caller's)
    # refused it from notAfter + 0.000001 s on, a second before a reference peer does.
    when = math.floor(time.time() if now is None else now)
    root_keys = [raw_public_key(r) for r in roots]
    root_ids = [key_id(r) for r in root_keys]
    phases = _PHASES[mode]
    failure = _Failure()
    best: VerifiedChain | None = None
    steps = 0
    # Signature checks, made once each: a cert's parent key is the one whose id is its
    # AKI, so every candidate parent of a cert has the same key. Loops and duplicates make
    # the search walk many paths (a delegation loop of 31 certs: thousands), and it runs
    # on a broker's reactor for any client's xsub/xpub.
    parent_sig: dict[int, bool] = {}
    root_sig: dict[tuple[int, int], bool] = {}

    def signed(idx: int, signer: bytes) -> bool:
        ok = parent_sig.get(idx)
        if ok is None:
            ok = parent_sig[idx] = parsed[idx].signed_by(signer)
        return ok

    def check_cert(idx: int, depth: int) -> bool:
        cert = parsed[idx]
        # `now` too: a refusal a peer reads for a clock that is off names both ends.
        if when < cert.not_before:
            failure.note(
                depth,
                ChainError(
                    Reason.NOT_YET_VALID,
                    f"valid from {_when(cert.not_before)}; now is {_when(when)}",
                    index=idx,
                ),
            )
            return False
        if when > cert.not_after:
            failure.note(
                depth,
                ChainError(
                    Reason.EXPIRED,
                    f"expired at {_when(cert.not_after)}; now is {_when(when)}",
                    index=idx,
                ),
            )
            return False
        return True

    def try_end(path: list[int], depth: int) -> int | bool | None:
        """Root check at the top of `path`: False if refused, else the root index."""
        top = parsed[path[-1]]
        if not root_keys:
            return None
        matching = [i for i, rid in enumerate(root_ids) if rid == top.authority_key_id]
        if not matching:
            failure.note(
                depth,
                ChainError(
                    Reason.UNTRUSTED_ROOT,
                    f"top cert AKI {top.authority_key_id.hex()[:16]}... is no trusted root key",
                    index=path[-1],
                ),
            )
            return False
        for i in matching:
            ok = root_sig.get((path[-1], i))
            if ok is None:
                ok = root_sig[path[-1], i] = top.signed_by(root_keys[i])
            if ok:
                return i
        failure.note(
            depth,
            ChainError(
                Reason.BAD_ROOT_SIGNATURE, "root key did not sign the top cert", index=path[-1]
            ),
        )
        return False

    def walk(path: list[int], pi: int, count: int) -> None:
        nonlocal best, steps
        steps += 1
        if steps > _MAX_STEPS:
            return
        depth = len(path) - 1
        cur = parsed[path[-1]]
        if _may_end_here(phases, pi, count):
            root = try_end(path, depth)
            if root is not False and (best is None or len(path) > len(best.certs)):
                best = VerifiedChain(
                    tuple(parsed[i] for i in path),
                    root if isinstance(root, int) else None,
                    tuple(path),
                )
        if _must_end_here(phases, pi, count):
            return
        candidates = [
            i
            for i, c in enumerate(parsed)
            if i not in path and c.subject_key_id == cur.authority_key_id
        ]
        if not candidates:
            if not _may_end_here(phases, pi, count):
                failure.note(depth, _no_parent(parsed, path))
            return
        for ci in candidates:
            parent = parsed[ci]
            pdepth = depth + 1
            fitting = []
            type_error: ChainError | None = None
            for pj, n in _next_phases(phases, pi, count):
                err = _check_type(phases[pj], parent, ci)
                if err is None:
                    fitting.append((pj, n))
                elif type_error is None or type_error.reason is Reason.WRONG_CERT_TYPE:
                    type_error = err  # prefer the specific del_type error
            if not fitting:
                assert type_error is not None
                failure.note(pdepth, type_error)
                continue
            if not check_cert(ci, pdepth):
                continue
            # Parent must be CA (guaranteed by the phases) with pathlen >= certs below - 1.
            if parent.pathlen is not None and parent.pathlen < len(path) - 1:
                failure.note(
                    pdepth,
                    ChainError(
                        Reason.PATHLEN_EXCEEDED,
                        f"pathlen {parent.pathlen} but {len(path) - 1} CA cert(s) below",
                        index=ci,
                    ),
                )
                continue
            if not signed(path[-1], parent.public_key):
                failure.note(
                    pdepth,
                    ChainError(
                        Reason.BAD_SIGNATURE,
                        f"signature does not verify with the {parent.cert_type.label} key",
                        index=path[-1],
                    ),
                )
                continue
            for pj, n in fitting:
                walk([*path, ci], pj, n)

    leaf_error = _check_type(phases[0], parsed[0], 0)
    if leaf_error is not None:
        raise leaf_error
    if check_cert(0, 0):
        walk([0], 0, 1)
    if best is not None:
        return best
    if failure.error is not None:
        raise failure.error
    raise ChainError(Reason.MISSING_PARENT, "no valid chain found")


@dataclass(frozen=True)
class ExpChainInfo:
    """What an endpoint (or broker) learns from a controller's experiment chain."""

    chain: VerifiedChain
    channel: bytes  # the exppriv cert's AKI: keyid of the root EOp (publishable channel)

    @property
    def certs(self) -> tuple[Certificate, ...]:
        return self.chain.certs


@dataclass(frozen=True)
class EndpointChainInfo:
    """What a controller (or broker) learns from an endpoint's representation chain."""

    chain: VerifiedChain
    channels: tuple[bytes, ...]  # AKIs of every cert in the chain: subscribable channels

    @property
    def certs(self) -> tuple[Certificate, ...]:
        return self.chain.certs


def _check_leaf_key(chain: VerifiedChain, key: PublicKeyLike) -> None:
    if chain.leaf.public_key != raw_public_key(key):
        raise ChainError(
            Reason.LEAF_KEY_MISMATCH, "leaf public key is not the agent's key", index=0
        )


def parse_controller_exp_chain(
    certs: Sequence[Certificate | bytes],
    controller_key: PublicKeyLike,
    roots: Sequence[PublicKeyLike] = (),
    now: float | None = None,
) -> ExpChainInfo:
    """Verify a pubcmd->(delpriv)*->exppriv chain in ENDPOINT_AUTH_CONTROLLER mode, check
    that the leaf is `controller_key`, and give the channel = AKI of the exppriv cert."""
    chain = verify_chain(AuthMode.ENDPOINT_AUTH_CONTROLLER, certs, roots, now)
    _check_leaf_key(chain, controller_key)
    return ExpChainInfo(chain, chain.top.authority_key_id)


def parse_endpoint_rep_chain(
    certs: Sequence[Certificate | bytes],
    endpoint_key: PublicKeyLike,
    roots: Sequence[PublicKeyLike] = (),
    now: float | None = None,
) -> EndpointChainInfo:
    """Verify a subcmd->(delpriv)* chain in CONTROLLER_AUTH_ENDPOINT mode, check that the
    leaf is `endpoint_key`, and give the channels = the AKIs of every cert in the chain."""
    chain = verify_chain(AuthMode.CONTROLLER_AUTH_ENDPOINT, certs, roots, now)
    _check_leaf_key(chain, endpoint_key)
    return EndpointChainInfo(chain, tuple(c.authority_key_id for c in chain.certs))
