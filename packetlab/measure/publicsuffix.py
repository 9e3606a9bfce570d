"""The public-suffix list as curl 7.88 with libpsl 0.21 consults it for cookies.

curl drops a Set-Cookie whose Domain is a public suffix of the host that sent it
(`Domain=co.uk` from www.example.co.uk, `Domain=github.io` from a.github.io): libpsl's
`psl_is_cookie_domain_acceptable`, copied here over the Debian `publicsuffix` package's
list (the file curl's libpsl reads, both sections: ICANN and private). Without the
file, `acceptable` is None and the caller keeps its own rule (curl without libpsl).
"""

from __future__ import annotations

import functools
from pathlib import Path

LIST = Path("/usr/share/publicsuffix/public_suffix_list.dat")


class Suffixes:
    """The list's rules: plain (`co.uk`), wildcard (`*.kawasaki.jp`, kept as its parent,
    which libpsl counts as a suffix too) and exceptions (`!city.kawasaki.jp`)."""

    def __init__(self, text: str) -> None:
        self.plain: set[str] = set()
        self.wild: set[str] = set()
        self.exceptions: set[str] = set()
        for line in text.splitlines():
            rule = line.strip().split(" ", 1)[0].lower()
            if not rule or rule.startswith("//"):
                continue
            bucket = self.plain
            if rule.startswith("!"):
                rule, bucket = rule[1:], self.exceptions
            elif rule.startswith("*."):
                rule, bucket = rule[2:], self.wild
            bucket.add(rule)
            try:  # hosts come in A-labels (IDNA); the list has U-labels
                bucket.add(rule.encode("idna").decode("ascii"))
            except UnicodeError:
                pass

    def is_suffix(self, name: str) -> bool:
        """libpsl's is_public_suffix (PSL_TYPE_ANY): a single label (the `*` rule), an
        exact rule or a wildcard's parent, or one label under a wildcard; an exception
        is none."""
        if "." not in name:
            return True
        if name in self.exceptions:
            return False
        if name in self.plain or name in self.wild:
            return True
        return name.split(".", 1)[1] in self.wild

    def unregistrable(self, host: str) -> str:
        """libpsl's psl_unregistrable_domain: the longest public suffix of `host`."""
        name = host
        while not self.is_suffix(name):
            name = name.split(".", 1)[1]
        return name

    def acceptable(self, host: str, domain: str) -> bool:
        """psl_is_cookie_domain_acceptable: `domain` (no leading dot) for a cookie from
        `host`: the host itself, or a parent longer than the host's public suffix."""
        if host == domain:
            return True
        if len(domain) >= len(host) or not host.endswith("." + domain):
            return False
        return len(domain) > len(self.unregistrable(host))


@functools.cache
def suffixes() -> Suffixes | None:
    """The system's list, read once; None when it is not installed."""
    try:
        return Suffixes(LIST.read_text(encoding="utf-8"))
    except OSError:
        return None
