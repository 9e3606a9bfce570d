"""`pktlab run http -w` beside curl 7.88.1 (session 26, odds26): `%{size_request}` with
curl's User-Agent (ours is `pktlab-http/1`, two bytes longer a request), over a redirect
chain ending in a chunked body and with `-d` (the body counted, as curl's HTTP/1.1),
beside the other sizes and `%{num_redirects}`, `%{redirect_url}` (their redirect and
chunked cases: test_http_curl_side_by_side.py). `%{speed_*}` are bytes over
time_total: the same formula, not the same figure (the endpoint's times)."""

from __future__ import annotations

from pathlib import Path

from test_http_curl_side_by_side import both, http, pytestmark  # noqa: F401  (fixture)

W = ("%{size_request} %{size_header} %{size_download} %{size_upload} %{num_redirects} "
     "[%{redirect_url}] %{num_connects}\\n")  # fmt: skip


def test_size_request_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    urls = [f"{http}/r/302?to=/r/301%3Fto%3D/chunked", f"{http}/chunked", f"{http}/r/302?to=/x"]
    for extra in ([], ["-L"], ["-L", "-d", "a=12345"]):
        curl, ours = both("-s", "-o", "/dev/null", "-A", "curl/7.88.1", *extra, "-w", W, *urls,
                          cwd=tmp_path)  # fmt: skip
        assert ours.returncode == curl.returncode == 0, ours.stderr
        assert ours.stdout.decode().splitlines() == curl.stdout.decode().splitlines(), extra
