"""``twistd pktbroker``: the PacketLab broker (PROTOCOL.md §5). See docs/broker.md."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from packetlab.tapinterrupt import arm

arm("pktbroker")

from packetlab.heaptrim import lean_daemon_start  # noqa: E402

lean_daemon_start()  # before the imports that bring in the reactor

from packetlab.tapoptions import (  # noqa: E402
    TapOptions,
    distinct_ports,
    server_endpoint,
    tap_service,
)
from packetlab.wire.constants import DEFAULT_PUB_PORT, DEFAULT_SUB_PORT  # noqa: E402

from .config import (  # noqa: E402
    BROKER_CERT,
    BROKER_KEY,
    BrokerConfig,
    ConfigError,
    load_config,
)

__all__ = ["Options", "makeService"]


class Options(TapOptions):
    tapname = "pktbroker"
    synopsis = (
        "[--config FILE] [--cert AGENT_CERT] [--private-key KEY] [--publish ENDPOINT] "
        "[--subscribe ENDPOINT] [--store URL] [--max-publications N] "
        "[--max-publications-per-key N] [--max-publications-per-address N] "
        "[--idle-timeout SECONDS] [--per-address-share FRACTION]"
    )
    longdesc = (
        "Run a PacketLab broker: controllers publish experiments on the publish port, "
        "endpoints subscribe on the subscribe port, and the broker notifies every "
        "subscribed endpoint whose attributes match. Both ports speak TLS 1.3 with PPKS "
        "agent certificates; the broker's own agent certificate must be signed by the "
        "broker-operator key its clients trust (BrokerChainRootPath / BrokerCertRootPath). "
        f"After `pktlab init` the defaults just work: certs/{BROKER_CERT}.cert and "
        f"keys/{BROKER_KEY} in ~/.pktlab (or $PKTLAB_HOME), ports {DEFAULT_PUB_PORT} "
        f"(publish) and {DEFAULT_SUB_PORT} (subscribe) on all IPv4 addresses. ENDPOINT is a "
        "Twisted endpoint string, e.g. tcp:20556:interface=127.0.0.1 or "
        "tcp6:20557:interface=\\:\\:. Settings in FILE (default ~/.pktlab/broker.conf if "
        "it exists) use the keys BrokerCertPath, BrokerPrivKey, PublishListen, "
        "SubscribeListen, Store, StatusListen, ErrorDelay, ErrorDelayMax, FanOutBatch, "
        "DeliveryLinger, MaxPublications, MaxPublicationsPerKey, MaxPublicationsPerAddress, "
        "IdleTimeout, StatsInterval, PerAddressShare, LogLevel; "
        "options win. The subscribed and publishing links are capped by what the "
        "descriptor limit (`ulimit -n`) allows, a quarter for the publishers, and one "
        "source address holds at most --per-address-share of them; the log says how many "
        "when it starts."
    )
    optParameters: list[list[Any]] = [
        ["config", "c", None, "broker.conf path (default ~/.pktlab/broker.conf if it exists)."],
        ["cert", None, None,
         f"Agent certificate (PEM, leaf first) [default: ~/.pktlab/certs/{BROKER_CERT}.cert]."],
        ["private-key", None, None,
         f"Private key of the agent certificate [default: ~/.pktlab/keys/{BROKER_KEY}]."],
        ["publish", None, None,
         f"Where controllers publish [default: tcp:{DEFAULT_PUB_PORT}, all IPv4 addresses]."],
        ["subscribe", None, None,
         f"Where endpoints subscribe [default: tcp:{DEFAULT_SUB_PORT}, all IPv4 addresses]."],
        ["store", None, None,
         "Shared state: memory: (default, this process only) or redis://HOST:PORT/N "
         "to share publications and delivery records with other brokers."],
        ["max-publications", None, None,
         "Live publications the broker holds, all publishers together; an xpub past it is "
         "refused with EPUBBADXD [default: 10000]."],
        ["max-publications-per-key", None, None,
         "Live publications one publisher agent key may hold (public channels need no "
         "proof and keys are free to make: one key must not fill the table); past it, "
         "EPUBBADXD [default: 1000]."],
        ["max-publications-per-address", None, None,
         "Live publications from one source address, all its keys together (publishers "
         "behind one NAT share it; an IPv6 address counts by its /64, a link-local one by "
         "itself and its interface; a /48, or one interface's link-local peers, holds two "
         "shares); past it, EPUBBADXD. The last tenth of --max-publications is kept for "
         "addresses (/48s) holding fewer than 16 [default: 5000]."],
        ["idle-timeout", None, None,
         "Seconds a client has from its connect (the TLS handshake included) to its first "
         "successful xsub or xpub before it is closed, 1..3600 [default: 30]."],
        ["per-address-share", None, None,
         "Fraction of each port's links (capped by the descriptor limit) one source "
         "address may hold, all its keys together: endpoints behind one NAT share it, an "
         "IPv6 address counts by its /64 (a link-local one by itself and its interface), "
         "and a /48 (one interface's link-local peers) holds twice the share; past it a "
         "first xsub gets ESUBBADCHN (xpub EPUBBADXD) and the link is closed. Never fewer "
         "than 64 links, or half the port's if that is less; 1: no share [default: 0.25]."],
    ]  # fmt: skip

    def postOptions(self) -> None:
        from packetlab.ppks import PktlabHome

        try:
            cfg = load_config(self["config"])
        except ConfigError as e:  # a file:line: key error, or the file itself
            opt = "--config: " if str(e).startswith("cannot read") else ""
            raise usage.UsageError(f"{opt}{e}") from None
        for opt, key in (
            ("cert", "BrokerCertPath"),
            ("private-key", "BrokerPrivKey"),
            ("publish", "PublishListen"),
            ("subscribe", "SubscribeListen"),
            ("store", "Store"),
            ("max-publications", "MaxPublications"),
            ("max-publications-per-key", "MaxPublicationsPerKey"),
            ("max-publications-per-address", "MaxPublicationsPerAddress"),
            ("idle-timeout", "IdleTimeout"),
            ("per-address-share", "PerAddressShare"),
        ):
            if self[opt] is not None:
                try:
                    cfg.set(key, self[opt], f"--{opt}")
                except ConfigError as e:
                    raise usage.UsageError(str(e)) from None
        cfg.apply_home_defaults(PktlabHome.at())
        if self["log-level"] is None:  # the option wins over the config's LogLevel
            self["log-level"] = cfg.log_level
        self["broker_config"] = cfg
        # Where it listens and its store first: a mistyped --publish was hidden behind a
        # missing certificate, and said only once `pktlab init` had been run.
        _check_listen(None, cfg)
        if cfg.store != "memory:":
            from .redis_store import parse_redis_url

            try:
                parse_redis_url(cfg.store)
            except ValueError as e:
                raise usage.UsageError(
                    f"{cfg.origin('Store')}: {e} (or memory:, the default)"
                ) from None
        self["credentials"] = _credentials(cfg)


# A key and a certificate of different keys: give the certificate's own key, or one
# made for this key (`pktlab init` would not help: it writes a new home, not this pair).
PAIR_HINT = (
    "Give the key the certificate was issued for, or a certificate of this key "
    "(pktlab ppks sign agent SIGNER_KEY NOT_BEFORE NOT_AFTER OUT -k KEY.pub)."
)


def _credentials(cfg: BrokerConfig) -> Any:
    """The broker's agent credentials, refused here (one line naming the option or
    FILE:LINE: Key) where every reference client would refuse them: not a key pair, not an
    agent certificate, or not valid now. A client refused in the TLS handshake reconnects at
    once, for ever (BROKER-PROXY-OBSERVED.md §1.4)."""
    import time

    from packetlab.tls import Credentials, TLSConfigError, agent_leaf_error

    assert cfg.private_key is not None
    hint = (
        "Run `pktlab init` to create the broker-operator key k_bop and the broker "
        f"certificate {BROKER_CERT} (or give --cert and --private-key)."
    )
    try:
        creds = Credentials.load(cfg.cert, cfg.private_key)
    except TLSConfigError as e:
        if e.part == "pair":  # name both, the one given on the command line first
            key, cert = cfg.origin("BrokerPrivKey"), cfg.origin("BrokerCertPath")
            first, second = (cert, key) if cert.startswith("--") else (key, cert)
            raise usage.UsageError(  # (not `pktlab init`'s hint: both files are there)
                f"{first}: the broker's private key and certificate (see also {second}) do "
                f"not belong together: {e}. {PAIR_HINT}"
            ) from None
        where = cfg.origin("BrokerPrivKey" if e.part == "key" else "BrokerCertPath")
        fix = e.unreadable()  # there, not readable: `pktlab init` would not help
        said = f" ({fix})" if fix else f". {hint}"
        raise usage.UsageError(f"{where}: broker agent certificate: {e}{said}") from None
    leaf = creds.leaf
    what = f"{cfg.origin('BrokerCertPath')}: broker agent certificate {', '.join(cfg.cert)}"
    wrong = agent_leaf_error(leaf, what, "client checks the broker's certificate")
    if wrong is not None:
        raise usage.UsageError(f"{wrong}. {hint}")
    now = time.time()
    if now > leaf.not_after:
        raise usage.UsageError(f"{what} expired at {_utc(leaf.not_after)}: clients refuse it.")
    if now < leaf.not_before:
        raise usage.UsageError(
            f"{what} is not valid before {_utc(leaf.not_before)}: clients refuse it until then."
        )
    from twisted.logger import Logger

    from packetlab.tls import chain_validity

    error, warning, _ = chain_validity(creds.chain, cfg.origin("BrokerCertPath"), now)
    if error is not None:  # a certificate above the leaf
        raise usage.UsageError(f"broker agent certificate: {error}")
    if warning is not None:  # a broker past its date would only spin its clients
        Logger(namespace="pktbroker").warn("broker agent certificate: {w}", w=warning)
    return creds


def _utc(ts: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_listen(reactor: Any, cfg: BrokerConfig) -> None:
    """A listening address that is no Twisted endpoint string stops the daemon now, with
    where it was given, not once the reactor runs (where the broker would log it and stay
    up with no port)."""
    made = []
    for key, where in (
        ("PublishListen", cfg.publish),
        ("SubscribeListen", cfg.subscribe),
        ("StatusListen", cfg.status),
    ):
        if where is None:
            continue
        ep = server_endpoint(reactor, where, cfg.origin(key), "tcp:20556:interface=127.0.0.1")
        made.append((cfg.origin(key), ep))
    distinct_ports(made)


@tap_service
def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from packetlab.sigterm import install_sigterm

    install_sigterm(reactor)  # not Twisted's handler: it can deadlock on its log lock
    from twisted.logger import Logger

    from .service import BrokerService

    log = Logger(namespace="pktbroker")
    cfg: BrokerConfig = options["broker_config"]
    _check_listen(reactor, cfg)
    for warning in cfg.warnings:
        log.warn("config: {warning}", warning=warning)
    from .throttle import Throttle

    throttle = Throttle(base=cfg.error_delay, cap=max(cfg.error_delay, cfg.error_delay_max))
    svc = BrokerService(
        reactor,
        options["credentials"],
        publish=cfg.publish,
        subscribe=cfg.subscribe,
        status=cfg.status,
        throttle=throttle,
        store=cfg.store,
        fanout_batch=cfg.fanout_batch,
        delivery_linger=cfg.delivery_linger,
        max_publications=cfg.max_publications,
        max_per_key=cfg.max_per_key,
        idle_timeout=cfg.idle_timeout,
        max_per_address=cfg.max_per_address,
        per_address_share=cfg.per_address_share,
        stats_interval=cfg.stats_interval,
    )
    return svc
