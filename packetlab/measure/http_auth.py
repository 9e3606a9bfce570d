"""--digest and --anyauth as curl 7.88.1 does them: the first request goes without
credentials; a 401 whose WWW-Authenticate offers a scheme curl would use is answered by
one more request to the same URL with `Authorization: Digest ...` (RFC 7616: MD5,
SHA-256, SHA-512-256, their -sess forms, qop=auth, `userhash`) or, --anyauth and only
Basic offered, `Basic ...`. The field's parameters are in curl's order (`username`,
`realm`, `nonce`, `uri`, [`cnonce`, `nc`, `qop`,] `response`[, `opaque`][,
`algorithm`][, `userhash=true`]); the cnonce is curl's form (base64 of 32 random hex
digits), random as curl's.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from packetlab.measure.http_fields import basic_auth

__all__ = ["SCHEMES", "answer", "new_cnonce", "offered"]

SCHEMES = ("basic", "digest", "anyauth")  # -u's: curl's default, --digest, --anyauth
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def _challenges(headers: list[tuple[str, str]], scheme: str) -> list[str]:
    """The parameters of each WWW-Authenticate challenge of `scheme` (case-blind)."""
    out = []
    for k, v in headers:
        if k.lower() != "www-authenticate":
            continue
        word, _, rest = v.strip().partition(" ")
        if word.lower() == scheme:
            out.append(rest)
    return out


def _params(text: str) -> dict[str, str]:
    found = {}
    for name, value in _PARAM.findall(text):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found[name.lower()] = value
    return found


def _digest_params(headers: list[tuple[str, str]]) -> dict[str, str] | None:
    """The first Digest challenge curl can answer (a nonce, a known algorithm, a qop
    with `auth` or none)."""
    for text in _challenges(headers, "digest"):
        p = _params(text)
        algorithm = p.get("algorithm", "MD5")
        base = algorithm.upper().removesuffix("-SESS")
        qops = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
        if "nonce" in p and base in _HASHES and (not qops or "auth" in qops):
            return p
    return None


def offered(headers: list[tuple[str, str]], scheme: str) -> bool:
    """Whether a 401 with these fields is answered again (curl's "Issue another request
    to this URL") under -u's `scheme`. `SCHEME+bearer` (--oauth2-bearer beside --basic,
    --digest or --anyauth; `none+bearer` without -u): a Bearer challenge first, as curl
    7.88.1's pickoneauth, else SCHEME's (`basic`: a Basic challenge)."""
    scheme, _, bearer = scheme.partition("+")
    if bearer and _challenges(headers, "bearer"):
        return True
    if scheme == "basic" and bearer:
        return bool(_challenges(headers, "basic"))
    if scheme == "digest":
        return _digest_params(headers) is not None
    if scheme == "anyauth":
        return _digest_params(headers) is not None or bool(_challenges(headers, "basic"))
    return False


def _quoted(text: str) -> str:
    """curl's auth_digest_string_quoted: `"` and `\\` escaped with a backslash."""
    return re.sub(r'(["\\])', r"\\\1", text)


def new_cnonce() -> str:
    """curl's: Curl_rand_hex(33), then base64 of its 32 hex digits."""
    return base64.b64encode(secrets.token_hex(16).encode()).decode()


def answer(headers: list[tuple[str, str]], scheme: str, user: bytes, password: bytes | None,
           method: str, uri: str, cnonce: str | None = None, nc: int = 1,
           bearer: str | None = None) -> str | None:  # fmt: skip
    """The Authorization value for a request to `uri` under the 401's challenge
    (`headers`; None: none curl would send). Later requests to the origin answer the
    same challenge again, as curl: the same cnonce, `nc` counted up. `bearer`: the
    token of a `SCHEME+bearer` scheme (`offered`), sent when a Bearer challenge came.
    `password` None: no -u (beside a Bearer): Basic is "" (curl asks again without the
    field), Digest answers for an empty user and password (measured, session 30)."""
    scheme, _, wants = scheme.partition("+")
    if wants and bearer is not None and _challenges(headers, "bearer"):
        return f"Bearer {bearer}"
    p = _digest_params(headers) if scheme in ("digest", "anyauth") else None
    if p is None:
        basic = scheme == "anyauth" or (scheme == "basic" and wants)
        if basic and _challenges(headers, "basic"):
            return "" if password is None else basic_auth(user, password)
        return None
    algorithm = p.get("algorithm", "MD5")
    name = _HASHES[algorithm.upper().removesuffix("-SESS")]

    def h(data: bytes) -> str:
        return hashlib.new(name, data).hexdigest()

    realm, nonce = p.get("realm", ""), p["nonce"]
    cnonce = new_cnonce() if cnonce is None else cnonce
    qop = "auth" if p.get("qop") else None
    raw_realm = realm.encode("utf-8", "surrogateescape")
    ha1 = h(user + b":" + raw_realm + b":" + (password or b""))
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}".encode())
    ha2 = h(f"{method}:{uri}".encode("utf-8", "surrogateescape"))
    count = f"{nc:08x}"
    if qop:
        response = h(f"{ha1}:{nonce}:{count}:{cnonce}:{qop}:{ha2}".encode())
    else:
        response = h(f"{ha1}:{nonce}:{ha2}".encode())
    shown = user.decode("utf-8", "surrogateescape")
    if p.get("userhash", "").lower() == "true":
        shown = h(user + b":" + raw_realm)
    out = (f'Digest username="{_quoted(shown)}", realm="{_quoted(realm)}", '
           f'nonce="{nonce}", uri="{uri}", ')  # fmt: skip
    if qop:
        out += f'cnonce="{cnonce}", nc={count}, qop={qop}, '
    out += f'response="{response}"'
    if "opaque" in p:
        out += f', opaque="{p["opaque"]}"'
    if "algorithm" in p:
        out += f", algorithm={algorithm}"
    if p.get("userhash", "").lower() == "true":
        out += ", userhash=true"
    return out
