"""TSIG (RFC 8945) for `dns_query` and `dns_xfr`, as dig 9.18 signs and checks it.

A query is signed by dnspython (`sign`: the TSIG last in the additional section, fudge
300, the query's own ID as the original ID, the time now), which gives dig's bytes for
the same ID, time and EDNS options (`tests/unit/measure/test_dnstsig.py` pins one
captured from dig). A reply is checked here (`Verifier`), in the order of BIND's
`dns_tsig_verify` (and `tsig_verify_tcp` for a transfer's later messages), so that a
failure gets the words dig prints after `;; Couldn't verify signature: `
(`expected a TSIG or SIG(0)`, `tsig verify failure`, `clocks are unsynchronized`,
`tsig indicates error`, ...).

The keys come from dig's `-y [hmac:]name:secret` (`key_from_y`; hmac-md5 when no
algorithm is named, as dig 9.18) and `-k FILE` (`key_from_file`: BIND's key file,
`key "name" { algorithm hmac-sha256; secret "base64"; };`). A key dig cannot make is
dig's warning and no key (the query goes unsigned, as dig's); a `-y` without a name and
secret, or a key file without algorithm or secret, is a `KeyUsageError` (dig: exit 1).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: dig's algorithm words -> (TSIG algorithm name, hashlib name, digest bytes)
ALGORITHMS = {
    "hmac-md5": ("hmac-md5.sig-alg.reg.int.", "md5", 16),
    "hmac-sha1": ("hmac-sha1.", "sha1", 20),
    "hmac-sha224": ("hmac-sha224.", "sha224", 28),
    "hmac-sha256": ("hmac-sha256.", "sha256", 32),
    "hmac-sha384": ("hmac-sha384.", "sha384", 48),
    "hmac-sha512": ("hmac-sha512.", "sha512", 64),
}
DEFAULT_Y_ALGORITHM = "hmac-md5"  # dig 9.18's for `-y name:secret` (seen on the wire)
FUDGE = 300  # dig's
BADSIG, BADKEY, BADTIME = 16, 17, 18
UNSIGNED_MAX = 99  # RFC 8945 5.3.1: unsigned messages between two signed ones


class KeyUsageError(ValueError):
    """A key dig refuses outright (a usage error, dig's exit status 1)."""


@dataclass(frozen=True)
class TsigKey:
    name: str  # absolute, as given (dig prints it as given)
    algorithm: str  # dig's word: hmac-sha256, ...
    secret: bytes
    # dig's `hmac-sha256-128`: the MAC cut to these bits (rounded up to bytes, as BIND's
    # parse_bits); 0: the whole digest
    bits: int = 0
    # the clock of the host that signs and checks (s since the epoch; None: ours,
    # time.time): dig's, whose signatures the server takes within its fudge (300 s) of
    # its own; `run dns` gives the endpoint's (`RunClock.now`: ours was 600 s off, and
    # every reply BADTIME)
    now: Callable[[], float] | None = field(default=None, compare=False, repr=False)

    @property
    def mac_size(self) -> int:
        """The MAC's bytes in what this key signs (its truncation, or the digest's)."""
        return (self.bits + 7) // 8 if self.bits else self.digest_size

    @property
    def algorithm_name(self) -> str:
        return ALGORITHMS[self.algorithm][0]

    @property
    def digest_size(self) -> int:
        return ALGORITHMS[self.algorithm][2]

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, ALGORITHMS[self.algorithm][1]).digest()


@dataclass
class KeyResult:
    key: TsigKey | None
    warnings: list[str]  # dig's lines on stderr, in its order
    # dig's `;; Couldn't create key NAME: WHY` (on stdout, before the first banner); then
    # each reply's statistics end with `;; WARNING -- TSIG key was not used.`
    failed: str | None = None


BAD_ALGORITHM = ";; Warning, ignoring invalid TSIG algorithm"  # dig's, as it parses -y


def _make(name: str, algorithm: str, secret: str, warnings: list[str], bits: int = 0) -> KeyResult:
    """dig's key from its parts: the algorithm's warning, then `Couldn't create key`
    when it cannot be made (no key: the query goes unsigned, as dig's)."""
    import dns.name

    word = algorithm.lower()
    if word not in ALGORITHMS:
        warnings.append(f"{BAD_ALGORITHM} {algorithm}")
    try:
        dns.name.from_text(name)
    except Exception as e:
        reason = "empty label" if "empty" in str(e).lower() else str(e)
        return KeyResult(None, warnings, f";; Couldn't create key {name}: {reason}")
    try:  # dig: the secret is read before the algorithm is looked up
        raw = base64.b64decode(secret, validate=True) if secret else None
    except (binascii.Error, ValueError):
        raw = None
    if not raw:
        return KeyResult(None, warnings, f";; Couldn't create key {name}: bad base64 encoding")
    if word not in ALGORITHMS:
        return KeyResult(None, warnings, f";; Couldn't create key {name}: algorithm is unsupported")
    if len(raw) * 8 < 64:  # BIND's log line (dns_tsigkey_createfromkey), stamped
        now = time.time()
        stamp = time.strftime("%d-%b-%Y %H:%M:%S", time.localtime(now))
        warnings.append(f"{stamp}.{int(now * 1000) % 1000:03d} the key '{name}' is too short "
                        "to be secure")  # fmt: skip
    return KeyResult(TsigKey(name, word, raw, bits), warnings)


def key_from_y(text: str) -> KeyResult:
    """dig's `-y [hmac:]name:secret`. A word without a name and secret: KeyUsageError.
    A truncated MAC (`hmac-sha256-128`: `_truncated`) as dig 9.18 reads it."""
    parts = [p for p in text.split(":") if p]  # dig's strtok: empty fields are skipped
    if len(parts) < 2:
        raise KeyUsageError(f"-y {text}: give [hmac:]name:secret (dig: usage, exit 1)")
    if len(parts) == 2:
        algorithm, (name, secret) = DEFAULT_Y_ALGORITHM, parts
    else:
        algorithm, name, secret = parts[0], parts[1], parts[2]
    algorithm, bits = _truncated(algorithm)
    return _make(name, algorithm, secret, [], bits)


def _truncated(algorithm: str) -> tuple[str, int]:
    """dig 9.18's `HMAC-BITS` (its parse_hmac): the algorithm and the MAC's bits, 0..the
    digest's (0: whole), rounded up to a multiple of 8; out of range or no number: dig's
    error (KeyUsageError: dig exits 1)."""
    word = algorithm.lower()
    for name, (_, _, size) in ALGORITHMS.items():
        if word.startswith(name + "-"):
            text = word[len(name) + 1 :]
            if not text.isdigit():
                why = "not a valid number"
            elif int(text) > size * 8:
                why = "out of range"
            else:
                return name, (int(text) + 7) // 8 * 8
            raise KeyUsageError(f"invalid digest-bits [0..{size * 8}] '{text}': {why} "
                                "(dig: couldn't parse digest bits)")  # fmt: skip
    return algorithm, 0


def _tokens(text: str) -> list[str]:
    """BIND's configuration words: quoted strings (kept with their quotes), braces and
    semicolons, comments (#, //, /* */) dropped."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = len(text) if j < 0 else j + 2
        elif c in "{};":
            out.append(c)
            i += 1
        elif c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise _FileError("unexpected end of input")
            out.append(text[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in '{};"':
                j += 1
            out.append(text[i:j])
            i = j
    return out


class _FileError(Exception):
    pass


def _unquote(word: str) -> str:
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


def _parse_keyfile(text: str) -> list[tuple[str, dict[str, str]]]:
    words = _tokens(text)
    keys: list[tuple[str, dict[str, str]]] = []
    i = 0

    def take(expected: str | None = None) -> str:
        nonlocal i
        if i >= len(words):
            raise _FileError("unexpected end of input")
        word = words[i]
        if expected is not None and word != expected:
            raise _FileError("failure" if expected == ";" else "unexpected token")
        i += 1
        return word

    while i < len(words):
        if words[i].lower() != "key":
            raise _FileError("unexpected token")
        take()
        name = _unquote(take())
        if name in "{};":
            raise _FileError("unexpected token")
        take("{")
        fields: dict[str, str] = {}
        while i < len(words) and words[i] != "}":
            word = take().lower()
            if word not in ("algorithm", "secret"):
                raise _FileError("unexpected token")
            fields[word] = _unquote(take())
            take(";")
        take("}")
        take(";")
        if any(n.lower().rstrip(".") == name.lower().rstrip(".") for n, _ in keys) or keys:
            raise _FileError("already exists")
        keys.append((name, fields))
    return keys


def key_from_file(path: str) -> KeyResult:
    """dig's `-k FILE`: BIND's key file. What dig cannot read is its warning
    (`Couldn't read key from FILE: REASON`) and no key; a key without algorithm or secret
    is a KeyUsageError (`dig: key must have algorithm and secret`, exit 1)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(65536)
    except FileNotFoundError:
        return KeyResult(None, [f"Couldn't read key from {path}: file not found"])
    except OSError as e:
        return KeyResult(None, [f"Couldn't read key from {path}: {e.strerror or e}"])
    try:
        keys = _parse_keyfile(text)
    except _FileError as e:
        return KeyResult(None, [f"Couldn't read key from {path}: {e}"])
    if not keys:
        return KeyResult(None, [f"Couldn't read key from {path}: not found"])
    name, fields = keys[0]
    if "algorithm" not in fields or "secret" not in fields:
        raise KeyUsageError("key must have algorithm and secret")
    algorithm, bits = _truncated(fields["algorithm"])
    return _make(name, algorithm, fields["secret"], [], bits)


def sign(query: Any, key: TsigKey) -> None:
    """Sign `query` (a dnspython message) as dig does, when it is rendered."""
    import dns.tsig

    dkey = dns.tsig.Key(key.name, key.secret, key.algorithm_name)
    query.use_tsig(dkey, fudge=FUDGE, original_id=query.id)
    setattr(query, _MAC_SIZE, key.mac_size)  # dnspython's Message: unhashable
    if key.now is not None:
        setattr(query, _NOW, key.now)


_MAC_SIZE = "pktlab_mac_size"  # a signed query's MAC bytes, on the query (unhashable)
_NOW = "pktlab_now"  # the clock its time signed is read from (dnspython: time.time)


def render(query: Any) -> bytes:
    """`query`'s wire; signed, with its TSIG owner name written whole, as BIND writes it
    (dnspython compresses it; the MAC, over the name's canonical form, is the same) and
    its MAC cut to the key's bits (dig's `hmac-sha256-128`: the digest's first bytes)."""
    wire = bytes(query.to_wire())
    if query.tsig is None:
        return wire
    now = getattr(query, _NOW, None)
    if now is not None:
        wire = _signed_at(query, wire, now())
    found = _tsig_at(wire)
    if found is None:  # pragma: no cover (dnspython wrote it last)
        return wire
    import dns.name

    at, t = found
    owner, used = dns.name.from_wire(wire, at)
    out = wire[:at] + bytes(owner.to_wire() or b"") + wire[at + used :]
    size = getattr(query, _MAC_SIZE, len(t["mac"]))
    if size >= len(t["mac"]):
        return out
    at, t = _tsig_at(out) or found
    p = at + len(bytes(owner.to_wire() or b""))
    alg_end = p + 10 + len(bytes(t["algorithm"].to_wire() or b""))
    mac_at = alg_end + 10  # time (6), fudge (2), MAC size (2)
    rdlen = struct.unpack(">H", out[p + 8 : p + 10])[0] - (len(t["mac"]) - size)
    head = out[: p + 8] + struct.pack(">H", rdlen) + out[p + 10 : mac_at - 2]
    return head + struct.pack(">H", size) + t["mac"][:size] + out[mac_at + len(t["mac"]) :]


def _signed_at(query: Any, wire: bytes, now: float) -> bytes:
    """`query`'s wire signed again at `now` (dnspython signs at time.time(), with no way
    to say another time): the message before its TSIG, as dnspython signed it, signed
    with its TSIG's fields and `now`, then rendered with that TSIG as it is."""
    import dns.tsig

    found = _tsig_at(wire)
    if found is None:  # pragma: no cover (dnspython wrote it last)
        return wire
    additional = struct.unpack(">H", wire[10:12])[0]
    unsigned = wire[:10] + struct.pack(">H", additional - 1) + wire[12 : found[0]]
    tsig, _ = dns.tsig.sign(unsigned, query.keyring, query.tsig[0], int(now), query.request_mac)
    query.tsig.clear()
    query.tsig.add(tsig)
    query.want_tsig_sign = False
    try:
        return bytes(query.to_wire())
    finally:
        query.want_tsig_sign = True


def query_mac(query: Any) -> bytes:
    """The MAC of a rendered signed query as sent (dnspython keeps the whole digest)."""
    mac = bytes(query.mac or b"")
    return mac[: getattr(query, _MAC_SIZE, len(mac))]


def _name_wire(text: str) -> bytes:
    import dns.name

    return bytes(dns.name.from_text(text).canonicalize().to_wire() or b"")


def _tsig_at(wire: bytes) -> tuple[int, Any] | None:
    """Where the message's TSIG record starts and its fields, or None: the last record
    of the additional section, of type TSIG (what BIND takes as the message's TSIG)."""
    import dns.name

    try:
        counts = struct.unpack(">4H", wire[4:12])
        p = 12
        for _ in range(counts[0]):
            p += dns.name.from_wire(wire, p)[1] + 4
        at = p
        for _ in range(sum(counts[1:])):
            at = p
            p += dns.name.from_wire(wire, p)[1]
            p += 10 + struct.unpack(">H", wire[p + 8 : p + 10])[0]
    except Exception:
        return None
    if not counts[3]:
        return None
    try:
        owner, used = dns.name.from_wire(wire, at)
        p = at + used
        rtype, rclass, ttl, rdlen = struct.unpack(">HHIH", wire[p : p + 10])
        if rtype != 250:
            return None
        p += 10
        end = p + rdlen
        alg, used = dns.name.from_wire(wire, p)
        p += used
        hi, lo, fudge, maclen = struct.unpack(">HIHH", wire[p : p + 10])
        p += 10
        mac = wire[p : p + maclen]
        p += maclen
        orig, error, olen = struct.unpack(">HHH", wire[p : p + 6])
        other = wire[p + 6 : p + 6 + olen]
        if p + 6 + olen != end or len(mac) != maclen:
            return None
    except Exception:
        return None
    fields = {"owner": owner, "class": rclass, "ttl": ttl, "algorithm": alg,
              "time": (hi << 32) | lo, "fudge": fudge, "mac": mac, "orig": orig,
              "error": error, "other": other}  # fmt: skip
    return at, fields


class Verifier:
    """Checks a reply's TSIG (or each message of a transfer's, RFC 8945's chaining: a
    message's MAC covers the MAC before it and the unsigned messages since) in the order
    of BIND 9.18's `dns_tsig_verify`/`tsig_verify_tcp`; `check` returns None or dig's
    words for the failure. As dig 9.18, unsigned messages after the first are only
    digested (any number of them) and the last need not be signed; `strict`: RFC 8945
    5.3.1's rules too (at most 99 unsigned in a row, `finish` says when the last was
    not signed)."""

    def __init__(
        self, key: TsigKey, request_mac: bytes, now: Any = None, strict: bool = False
    ) -> None:
        self.key, self.prior, self.strict = key, request_mac, strict
        self.now = now or key.now or time.time  # (the signer's clock: dig's host's)
        self.first = True
        self.pending: list[bytes] = []  # unsigned messages since the last signed one
        self.unsigned = 0

    def check(self, wire: bytes) -> str | None:
        found = _tsig_at(wire)
        if found is None:
            if self.first:
                self.first = False
                return "expected a TSIG or SIG(0)"
            self.unsigned += 1
            self.pending.append(wire)
            if self.strict and self.unsigned > UNSIGNED_MAX:
                return "expected a TSIG or SIG(0)"
            return None
        at, t = found
        key = self.key
        if t["owner"] != _dns_name(key.name) or t["algorithm"] != _dns_name(key.algorithm_name):
            return "tsig verify failure"
        maclen, size = len(t["mac"]), key.digest_size
        if maclen > size or (maclen > 0 and (maclen < 10 or maclen < (size + 1) // 2)):
            return "FORMERR"
        if maclen > 0:
            header = bytearray(wire[:12])
            header[10:12] = struct.pack(">H", struct.unpack(">H", header[10:12])[0] - 1)
            header[0:2] = struct.pack(">H", t["orig"])
            data = struct.pack(">H", len(self.prior)) + self.prior
            data += b"".join(self.pending) + bytes(header) + wire[12:at]
            times = struct.pack(">HIH", t["time"] >> 32, t["time"] & 0xFFFFFFFF, t["fudge"])
            if self.first:
                data += _name_wire(key.name) + struct.pack(">HI", t["class"], t["ttl"])
                data += _name_wire(key.algorithm_name) + times
                data += struct.pack(">HH", t["error"], len(t["other"])) + t["other"]
            else:
                data += times
            # the next message's MAC covers this one's as received, verified or not (dig)
            self.first, self.pending, self.unsigned, self.prior = False, [], 0, t["mac"]
            if not hmac.compare_digest(key.mac(data)[:maclen], t["mac"]):
                return "tsig verify failure"
        elif t["error"] not in (BADSIG, BADKEY):
            return "tsig verify failure"
        self.first, self.pending, self.unsigned, self.prior = False, [], 0, t["mac"]
        now = self.now()
        if now > t["time"] + t["fudge"] or now < t["time"] - t["fudge"]:
            return "clocks are unsynchronized"
        if 0 < maclen < (key.mac_size if key.bits else size):  # BIND's BADTRUNC checks
            return "tsig verify failure"
        if t["error"]:
            return "clocks are unsynchronized" if t["error"] == BADTIME else "tsig indicates error"
        return None

    def finish(self) -> str | None:
        """A transfer's end (`strict`: its last message must be signed)."""
        return "expected a TSIG or SIG(0)" if self.strict and self.pending else None


def _dns_name(text: str) -> Any:
    import dns.name

    return dns.name.from_text(text)


def verify_failure_note(words: str) -> str:
    return f"Couldn't verify signature: {words}"


NOT_VALIDATED = "WARNING -- Some TSIG could not be validated"
