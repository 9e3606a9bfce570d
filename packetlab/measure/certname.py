"""Whether a server certificate names the host asked for, by curl's rules (openssl.c's
verifyhost and Curl_cert_hostcheck): one piece for `pktlab run http`'s check
(`http_tls.TlsStream.check_name`) and for the lines its `-v` trace prints
(`http_trace`)."""

from __future__ import annotations

from typing import Any

from packetlab.hostport import is_address

__all__ = ["host_match", "name_check"]


def host_match(pattern: str, host: str) -> bool:
    """curl's Curl_cert_hostcheck: any case, a trailing dot ignored, a wildcard only as
    the whole leftmost label of a name with at least three labels, never for an address."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if not pattern.startswith("*.") or pattern.count(".") < 2 or is_address(host):
        return False
    rest = host.partition(".")[2]
    return bool(rest) and rest == pattern[2:] and not host.startswith(".")


def name_check(cert: Any, host: str, is_address: bool) -> tuple[bool, list[str]]:
    """curl's verifyhost (openssl.c) for a pyOpenSSL certificate: with a subjectAltName
    only its DNS names (IP addresses for an address) count, without one the last common
    name; (matched, curl's verbose lines for it). `host` is a URL's host as parsed
    (`http_url`): an internationalised name is already in its ASCII form."""
    from cryptography import x509

    c = cert.to_cryptography()
    try:
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        if is_address:
            import ipaddress

            if ipaddress.ip_address(host) in san.get_values_for_type(x509.IPAddress):
                return True, [f' subjectAltName: host "{host}" matched cert\'s IP address!']
        else:
            for dns in san.get_values_for_type(x509.DNSName):
                if host_match(dns, host):
                    return True, [f' subjectAltName: host "{host}" matched cert\'s "{dns}"']
        return False, [
            f" subjectAltName does not match {host}",
            f"SSL: no alternative certificate subject name matches target host name '{host}'",
        ]
    cn = [str(a.value) for a in c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if cn and host_match(cn[-1], host):
        return True, [f" common name: {cn[-1]} (matched)"]
    return False, [
        f"SSL: certificate subject name '{cn[-1] if cn else ''}' does not match "
        f"target host name '{host}'"
    ]
