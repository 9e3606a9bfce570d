"""curl 7.88's curl_getdate, pinned: each date below was given to curl 7.88.1 as
`-z DATE` against a loopback server and the If-Modified-Since it sent written down
(None: curl warned "Illegal date format" and sent none)."""

from __future__ import annotations

import pytest

from packetlab.measure.curldate import getdate, http_date

CURL_7_88_1 = [
    ("Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("20 Jan 2024", "Sat, 20 Jan 2024 00:00:00 GMT"),
    ("2024-01-20", None),
    ("20240120", "Sat, 20 Jan 2024 00:00:00 GMT"),
    ("Jan 20 2024", "Sat, 20 Jan 2024 00:00:00 GMT"),
    ("20 Jan 2024 10:11:12", "Sat, 20 Jan 2024 10:11:12 GMT"),
    ("20 Jan 2024 10:11:12 +0200", "Sat, 20 Jan 2024 08:11:12 GMT"),
    ("20 Jan 2024 10:11:12 CET", "Sat, 20 Jan 2024 09:11:12 GMT"),
    ("Sat, 20 Jan 2024 10:11:12 PST", "Sat, 20 Jan 2024 18:11:12 GMT"),
    ("January 20, 2024", None),
    ("2024/01/20", None),
    ("20/01/2024", None),
    ("2024-01-20T10:11:12Z", None),
    ("10:11:12", None),
    ("20 Jan", None),
    ("1705745472", None),
    ("20-Jan-2024", "Sat, 20 Jan 2024 00:00:00 GMT"),
    ("Sat Jan 20 2024", "Sat, 20 Jan 2024 00:00:00 GMT"),
    ("12 jan 2024 10:11", "Fri, 12 Jan 2024 10:11:00 GMT"),
    ("20 Jan 24", "Sat, 20 Jan 2024 00:00:00 GMT"),
    ("20 Jan 70", "Mon, 20 Jan 2070 00:00:00 GMT"),
    ("20 Jan 69", "Sun, 20 Jan 2069 00:00:00 GMT"),
    ("20 Jan 1969", "Mon, 20 Jan 1969 00:00:00 GMT"),
    ("20 Jan 2040", "Fri, 20 Jan 2040 00:00:00 GMT"),
    ("20 Jan 2024 25:00:00", None),
    ("31 Feb 2024", "Sat, 02 Mar 2024 00:00:00 GMT"),
    ("20 jAN 2024 10:11:12 -0000", "Sat, 20 Jan 2024 10:11:12 GMT"),
    ("20 Jan 2024 10:11:12 +02:00", None),
    ("20 Jan 2024 10:11:12 UT", "Sat, 20 Jan 2024 10:11:12 GMT"),
    ("20 Jan 2024 10:11:12 A", "Sat, 20 Jan 2024 11:11:12 GMT"),
    ("20 Jan 2024 10:11:12 N", "Sat, 20 Jan 2024 09:11:12 GMT"),
    ("20 Jan 2024 10:11:12 J", None),
    ("garbage", None),
    ("Jan 20 10:11:12 2024", "Sat, 20 Jan 2024 10:11:12 GMT"),
    ("20 Jan 2024 10:11:12 +5", None),
    ("Sun, 06 Nov 1994 08:49:37 GMT extra", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Sun 06 Nov 1994 08:49:37 GMT PST", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("20 Jan 99999", "Wed, 20 Jan 99999 00:00:00 GMT"),
    ("20 Jan 2024 1:2:3", "Sat, 20 Jan 2024 01:02:03 GMT"),
    ("20 Jan 2024 1: 2: 3", "Sat, 20 Jan 2024 01:02:03 GMT"),
    ("20 Jan 2024 1:-2:3", "Sat, 20 Jan 2024 00:58:03 GMT"),
    ("20 Jan 2024 10:11 +0530", "Sat, 20 Jan 2024 04:41:00 GMT"),
    ("20 Jan 2024 -1400", "Sat, 20 Jan 2024 14:00:00 GMT"),
    ("20 Jan 2024 -1401", None),
    ("1 Jan 1970 00:00:00 +0001", "Wed, 31 Dec 1969 23:59:00 GMT"),
    ("31 Dec 1969 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("32 Jan 2024", None),
    ("Jan 32 2024", None),
    ("Mon Tue 20 Jan 2024", None),
    ("20 Jan 2024 CEST", "Fri, 19 Jan 2024 22:00:00 GMT"),
    ("20 Jan 2024 BST", "Fri, 19 Jan 2024 23:00:00 GMT"),
    ("0 Jan 2024", None),
    ("20 jan 2024 9:60", None),
    ("20 Jan 2024 10:11:60", "Sat, 20 Jan 2024 10:12:00 GMT"),
    ("20 Jan 2024 100:11", None),
    ("20240132", None),
    ("20241320", None),
    ("19691231", "Wed, 31 Dec 1969 00:00:00 GMT"),
    ("20 Jan 2024 99999999999", None),
    ("1 1 1", None),
    ("Jan 5 5", "Wed, 05 Jan 2005 00:00:00 GMT"),
    ("5 Jan 5 5", None),
    ("Fri, 29 Feb 2000 23:59:59 +1400", "Tue, 29 Feb 2000 09:59:59 GMT"),
    ("Mar 1 1600", "Wed, 01 Mar 1600 00:00:00 GMT"),
    ("1 Mar 1601 00:00:00 GMT", "Thu, 01 Mar 1601 00:00:00 GMT"),
]


@pytest.mark.parametrize(("date", "sent"), CURL_7_88_1)
def test_dates_read_as_curl(date: str, sent: str | None) -> None:
    t = getdate(date)
    assert (None if t is None else http_date(t)) == sent


def test_http_date_of_any_time() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(-86400) == "Wed, 31 Dec 1969 00:00:00 GMT"
    assert http_date(951868799) == "Tue, 29 Feb 2000 23:59:59 GMT"
