"""`pktlab run http --cert FILE:PASSWORD` and `--pass` as curl 7.88 reads them: the
first colon not escaped splits (tool_getparam.c's parse_cert_parameter), the password
unlocks an encrypted key; a wrong or missing one is curl's 58 words, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_run_http_curl import parse
from web_pki import encrypted, make_pki

from packetlab.cli.run import RunError
from packetlab.cli.run_http_experiment import _client_cert, cert_parameter


def test_cert_parameter_as_curl() -> None:
    assert cert_parameter("c.pem") == ("c.pem", None)
    assert cert_parameter("c.pem:pw") == ("c.pem", "pw")
    assert cert_parameter("c.pem:pw:x") == ("c.pem", "pw:x")  # the first colon splits
    assert cert_parameter("c\\:d.pem:pw") == ("c:d.pem", "pw")  # \: a colon of FILE
    assert cert_parameter("c\\\\d:pw") == ("c\\d", "pw")  # \\ a backslash
    assert cert_parameter("c\\d") == ("c\\d", None)  # another backslash stays
    assert cert_parameter("c.pem:") == ("c.pem", None)  # empty: none


def test_an_encrypted_key_with_its_password(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    cert = str(pki["client"])
    key = str(encrypted(pki["client_key"], tmp_path / "enc.key", b"s3cret"))
    assert _client_cert(parse("--cert", f"{cert}:s3cret", "--key", key, "u")) == (
        cert, key, b"s3cret")  # fmt: skip
    assert _client_cert(parse("--cert", cert, "--key", key, "--pass", "s3cret", "u")) == (
        cert, key, b"s3cret")  # fmt: skip
    for argv in (["--cert", cert], ["--cert", f"{cert}:wrong"],
                 ["--cert", f"{cert}:s3cret", "--pass", "wrong"]):  # fmt: skip
        with pytest.raises(RunError, match=r"unable to set private key file .*curl: 58"):
            _client_cert(parse(*argv, "--key", key, "u"))
