"""The endpoint's binding numbers from PROTOCOL.md, transcribed literally (session 16
audit): §7.4 endpt.conf defaults, §1.4 timings and caps, §4.3 OIDs, §4.5 the built-in
send window, §8 the monitor ABI. The other tests mostly read these through the code's own
names, so a value that drifts from the spec fails only here."""

from __future__ import annotations

import hashlib
import sys

from packetlab.endpoint import protocol, service, tap
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD, SEND_BUF_OVERHEAD
from packetlab.endpoint.config import EndpointConfig, parse_config
from packetlab.monitor import abi
from packetlab.monitor.persist import cert_key
from packetlab.ppks import cert as ppks_cert
from packetlab.ppks.limits import DEFAULT_SEND_BURST


def test_endpt_conf_defaults_of_section_7_4() -> None:
    cfg = EndpointConfig()
    assert cfg.auto_extract_channel is True  # AutoExtractChannel [1]
    assert cfg.monitor_report_crash is False  # MonitorReportCrash [0]
    assert cfg.monitor_deadline_ms == 100  # MonitorDeadlineMillsec [100]
    assert cfg.monitor_memory_max == 1048576  # MonitorMemoryMax [1048576]
    assert cfg.monitor_debug is False  # MonitorEnableDebug
    assert cfg.endpoint_attr == ""  # EndpointAttr
    # MonitorMemoryMax: min 131072.
    low = parse_config(["MonitorMemoryMax 4096"], "t.conf")
    assert low.monitor_memory_max == 131072
    # RawModeLKM [0] and WorkerBusyWaitMode [0] are keys the parser takes.
    quiet = parse_config(["RawModeLKM 0", "WorkerBusyWaitMode 0"], "t.conf")
    assert quiet.buf_max == 8388608


def test_session_timings_and_caps_of_section_1_4() -> None:
    assert protocol.SETUP_TIMEOUT == 10.0  # STATE_SET_UP_TIME
    assert protocol.MAX_QUEUED == 100  # MAX_MSGQ_LEN
    # Controller connect: 3 s timeout, retried every 1 s, given up 5 s after the start.
    assert (service.CONNECT_TIMEOUT, service.CONNECT_RETRY, service.CONNECT_GIVE_UP) == (
        3.0,
        1.0,
        5.0,
    )
    assert tap.MAX_MONITORS == 16  # pktendpt -m, at most 16


def test_buffer_overheads_of_section_3_5() -> None:
    # sizeof(struct pktlab_message) + 44, the struct being 72 bytes on LP64.
    assert RECV_BUF_OVERHEAD == SEND_BUF_OVERHEAD == 72 + 44


def test_certificate_oids_and_default_send_window() -> None:
    assert (ppks_cert.OID_CERT_INFO, ppks_cert.OID_CERT_LIMIT) == ("1.2.3.1", "1.2.3.3")
    assert ppks_cert.OID_ED25519 == "1.3.101.112"
    # §4.5: 10 Mb/s over a 10 s window = 12,500,000 bytes per 10 s (in ticks).
    assert tuple(DEFAULT_SEND_BURST) == (12_500_000, 10 * 10**9)


def test_monitor_abi_numbers_of_section_8() -> None:
    assert abi.PM_LEN == 256
    assert abi.INFO_MAX == 0x10000
    assert abi.MONITOR_CRASH == 0xFFFF
    assert abi.MEMORY_MIN_PAGES == 2
    assert (abi.MEMORY_MODULE, abi.MEMORY_NAME, abi.HOST_MODULE) == ("monitor", "memory", "env")
    assert abi.WASI_MODULE == "wasi_snapshot_preview1"
    assert set(abi.HOST_FUNCS) == {
        "read_vmem_region",
        "persistent_memory_flush",
        "endpoint_debug_enabled",
        "monitor_debug",
    }
    assert abi.REQUESTS == ("nopen", "nclose", "nsend", "ncap")
    assert set(abi.CHECKS) == {"nopen", "nclose", "nsend", "ndata", "ncap"}
    # The argument lists of §8.2, times i64, the rest i32.
    assert abi.CHECKS["nsend"] == ("i32",) * 3 + ("i64",) + ("i32",) * 8
    assert abi.CHECKS["ndata"] == ("i32",) * 3 + ("i64",) + ("i32",) * 7
    assert abi.CHECKS["ncap"] == ("i32",) * 3 + ("i64",) + ("i32",) * 2
    assert abi.CHECKS["nopen"] == ("i32",) * 14
    assert abi.CHECKS["nclose"] == ("i32",) * 3
    # §8.1: the digest is SHA-256(0x01 || wasm).
    assert abi.encode(b"\0asm") == b"\x01\0asm"
    assert abi.digest(b"\0asm") == hashlib.sha256(b"\x01\0asm").digest()
    # §8.4: persistent memory key AKI(32) || serial || relative_idx:u16 in host order.
    key = cert_key(b"A" * 32, b"\x01\x02", 1)
    assert key == b"A" * 32 + b"\x01\x02" + (1).to_bytes(2, sys.byteorder)
