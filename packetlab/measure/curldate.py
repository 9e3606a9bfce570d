"""curl 7.88's date reader (lib/parsedate.c, `curl_getdate`) and its HTTP date writer.

curl reads a date as up to six words in any order, each a week day (`Sun`, `Sunday`), a
month (`Jan`), a time zone (`GMT`, `CET`, military letters), a time (`H:M:S`, `H:M`),
`+HHMM`/`-HHMM`, `YYYYMMDD`, a day (1-31, the first number that fits) or a year (two
digits: 19xx above 70, else 20xx); anything else fails the whole date. So `20 Jan 2024`,
`Jan 20 2024 10:11`, RFC 1123, RFC 850 and asctime dates are read, `2024-01-20` and
`January 20, 2024` are not. What it does with them (no calendar check beyond day 31:
`31 Feb` is 2 March) is copied, pinned against curl 7.88.1's If-Modified-Since."""

from __future__ import annotations

import re

_WKDAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY = -60  # curl's tDAYZONE: summer time, minutes
# curl's zones: minutes to add to the local time to make GMT
_ZONES = {
    "GMT": 0, "UT": 0, "UTC": 0, "WET": 0, "BST": _DAY, "WAT": 60, "AST": 240,
    "ADT": 240 + _DAY, "EST": 300, "EDT": 300 + _DAY, "CST": 360, "CDT": 360 + _DAY,
    "MST": 420, "MDT": 420 + _DAY, "PST": 480, "PDT": 480 + _DAY, "YST": 540,
    "YDT": 540 + _DAY, "HST": 600, "HDT": 600 + _DAY, "CAT": 600, "AHST": 600, "NT": 660,
    "IDLW": 720, "CET": -60, "MET": -60, "MEWT": -60, "MEST": -60 + _DAY,
    "CEST": -60 + _DAY, "MESZ": -60 + _DAY, "FWT": -60, "FST": -60 + _DAY, "EET": -120,
    "WAST": -420, "WADT": -420 + _DAY, "CCT": -480, "JST": -540, "EAST": -600,
    "EADT": -600 + _DAY, "GST": -600, "NZT": -720, "NZST": -720, "NZDT": -720 + _DAY,
    "IDLE": -720,
    # military letters, RFC 1123's signs (J, the observer's local time, is none)
    **{c: (i + 1) * 60 for i, c in enumerate("ABCDEFGHI")},
    **{c: (i + 10) * 60 for i, c in enumerate("KLM")},
    **{c: -(i + 1) * 60 for i, c in enumerate("NOPQRSTUVWXY")},
    "Z": 0,
}  # fmt: skip
_CUMULATIVE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_INT_MAX = 2**31 - 1
# sscanf's %02d: blanks skipped, then at most 2 characters of a signed number
_D2 = r"[ \t\n\v\f\r]*([+-][0-9]|[0-9]{1,2})"
_HMS = re.compile(r"([0-9]{1,2}):" + _D2 + ":" + _D2)
_HM = re.compile(r"([0-9]{1,2}):" + _D2)
_NUMBER = re.compile(r"[0-9]+")
_MONTHS = tuple(m.lower() for m in MONTHS)


def _tdiv(a: int, b: int) -> int:
    """C's integer division (toward zero)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _epoch(sec: int, minute: int, hour: int, mday: int, month: int, year: int) -> int:
    """curl's time2epoch: no check of the day against the month."""
    leap = year - (month <= 1)
    leap = _tdiv(leap, 4) - _tdiv(leap, 100) + _tdiv(leap, 400) - 1969 // 4 + 1969 // 100
    leap -= 1969 // 400
    days = (year - 1970) * 365 + leap + _CUMULATIVE[month] + mday - 1
    return ((days * 24 + hour) * 60 + minute) * 60 + sec


def getdate(text: str) -> int | None:
    """`curl_getdate(text)`: Unix time, or None where curl returns -1 (a date of -1 is
    0, as curl's)."""
    wday = month = mday = hour = minute = sec = year = tz = -1
    dignext = "mday"
    i, part = 0, 0
    while i < len(text) and part < 6:
        while i < len(text) and not (text[i].isascii() and text[i].isalnum()):
            i += 1
        if i >= len(text):
            break  # curl: the empty word at the end counts as a part, and ends the loop
        if text[i].isalpha():
            m = re.match(r"[A-Za-z]{1,31}", text[i:])
            word = m.group() if m else ""
            low, found = word.lower(), False
            if wday == -1:
                names = _WEEKDAY if len(word) > 3 else _WKDAY if len(word) == 3 else ()
                wday = names.index(low) if low in names else -1
                found = wday != -1
            if not found and month == -1 and len(word) == 3:
                month = _MONTHS.index(low) if low in _MONTHS else -1
                found = month != -1
            if not found and tz == -1 and len(word) <= 4 and word.upper() in _ZONES:
                tz, found = _ZONES[word.upper()] * 60, True
            if not found:
                return None
            i += len(word)
        else:
            hms = _HMS.match(text, i) if sec == -1 else None
            hm = _HM.match(text, i) if sec == -1 and hms is None else None
            if hms is not None:
                hour, minute, sec = (int(g) for g in hms.groups())
                i = hms.end()
            elif hm is not None:
                hour, minute, sec = int(hm.group(1)), int(hm.group(2)), 0
                i = hm.end()
            else:
                digits = _NUMBER.match(text, i)
                assert digits is not None
                val, n, found = int(digits.group()), len(digits.group()), False
                if val > _INT_MAX:
                    return None
                if tz == -1 and n == 4 and val <= 1400 and i > 0 and text[i - 1] in "+-":
                    found = True  # +HHMM: local time ahead of GMT, so taken off
                    tz = (val // 100 * 60 + val % 100) * 60
                    tz = -tz if text[i - 1] == "+" else tz
                if n == 8 and year == -1 and month == -1 and mday == -1:
                    found = True  # YYYYMMDD
                    year, month, mday = val // 10000, val % 10000 // 100 - 1, val % 100
                if not found and dignext == "mday" and mday == -1:
                    if 0 < val < 32:
                        mday, found = val, True
                    dignext = "year"
                if not found and dignext == "year" and year == -1:
                    year, found = val, True
                    if year < 100:
                        year += 1900 if year > 70 else 2000
                    if mday == -1:
                        dignext = "mday"
                if not found:
                    return None
                i = digits.end()
        part += 1
    if sec == -1:
        sec = minute = hour = 0
    if -1 in (mday, month, year):
        return None
    if mday > 31 or month > 11 or hour > 23 or minute > 59 or sec > 60:
        return None
    t = _epoch(sec, minute, hour, mday, month, year) + (0 if tz == -1 else tz)
    return 0 if t == -1 else t


def http_date(t: int) -> str:
    """curl's HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) of any Unix time, the year
    written whole (`20 Jan 99999`, as curl 7.88.1 sends)."""
    days, rest = divmod(t, 86400)
    # days to a civil date (H. Hinnant's days_from_civil inverse), proleptic Gregorian
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    wday = ("Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed")[days % 7]
    hh, mm, ss = rest // 3600, rest // 60 % 60, rest % 60
    return f"{wday}, {day:02d} {MONTHS[month - 1]} {year:04d} {hh:02d}:{mm:02d}:{ss:02d} GMT"
