"""The `pktlab` command: one sub-command per module, imported only when used."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int
# (and may have startup_imports(args) -> names of modules: see `_import_ahead`).
COMMANDS: dict[str, tuple[str, str]] = {
    "decode": ("packetlab.cli.decode", "decode PacketLab frames to JSON lines"),
    "encode": ("packetlab.cli.encode", "encode JSON lines to PacketLab frames"),
    "ppks": ("packetlab.cli.ppks", "PPKS keys, CSRs, certificates and chain checks"),
    "init": ("packetlab.cli.init", "set up ~/.pktlab with demo keys, certificates and CSRs"),
    "testbed": ("packetlab.cli.testbed", "network-namespace testbeds: up, down, status"),
    "run": (
        "packetlab.cli.run",
        "a measurement through an endpoint: traceroute, ping, dns, http, throughput, "
        "sendgap, clocksync, alias, sslcert",
    ),
    "broker": ("packetlab.cli.broker", "a running broker's channels and publications"),
    "monitor": ("packetlab.cli.monitor", "build, digest and test WebAssembly monitors"),
    "reflex": ("packetlab.cli.reflex", "build, digest and test endpoint reflexes"),
    "xpmgr": ("packetlab.cli.xpmgr", "experiment manager: accept endpoints, run an mlet on each"),
    "wrap": ("packetlab.cli.wrap", "run an unmodified program through an endpoint"),
    "campaign": ("packetlab.cli.campaign", "one measurement over many endpoints at once"),
    "compare": (
        "packetlab.cli.compare",
        "a measurement through an endpoint vs the native tool: C1-C3",
    ),
}


def build_parser(only: str | None = None, then: str | None = None) -> argparse.ArgumentParser:
    """The parser; sub-command modules are imported only for `only` (all when None).
    `then`, the word after `only` on the command line, lets a command with sub-commands
    of its own (`pktlab run`) build only that one's parser."""
    parser = _Parser(
        prog="pktlab",
        description="PacketLab tools: wire dissector, experiments, certificates, testbeds.",
    )
    from packetlab import __version__

    parser.add_argument("--version", action="version", version=f"pktlab {__version__}")
    # A dest no command's own options use (`pktlab wrap`'s operands are `command`).
    sub = parser.add_subparsers(dest="_pktlab_command", metavar="COMMAND")
    sub.required = True
    for name, (modname, helptext) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=modname)
        if only is None or name == only:
            module = importlib.import_module(modname)
            if then is not None and name == "run":
                module.add_arguments(p, only=then)
            else:
                module.add_arguments(p)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line `pktlab ARGV` as the command will see it (exits 2 on a usage
    error, as argparse)."""
    argv = list(argv)
    # Import only the module of the command asked for: fast start-up, and one broken
    # optional dependency cannot take the other commands down.
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    chosen = _command_word(argv)
    # The word right after it (`run traceroute`), not after an option (`run -h traceroute`).
    then = argv[at + 1] if at + 1 < len(argv) and not argv[at + 1].startswith("-") else None
    parser = build_parser(chosen, then)
    if "-h" in argv or "--help" in argv:
        _wrap_descriptions(parser)
    args, extra = parser.parse_known_args(argv)
    if extra and not _more_operands(args, extra):
        bad = [e for e in extra if e.startswith("-") and len(e) > 1] or extra
        # Said by the command that did not know them, with its usage, and what was meant.
        owner = _command_parser(parser, args)
        owner.error(f"unrecognized arguments: {' '.join(bad)}{_did_you_mean(owner, bad)}")
    args._argv = argv  # the words as given: where an option stood among the operands (dig)
    return args


def _command_word(argv: Sequence[str]) -> str:
    """The command of `pktlab ARGV` (`run`), the first word not an option; "" when none."""
    return next((a for a in argv if not a.startswith("-")), "")


class NativeValueError(argparse.ArgumentTypeError):
    """A bad option value said as the native tool says it (iputils ping's `invalid
    argument: '0': out of range: 1 <= value <= N`), alone on its line after the command's
    name and with the tool's exit status, not argparse's usage and 2."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped choice (`pktlab run pign`), as
    Python 3.14's `suggest_on_error`; the sub-commands' parsers are of this class too.
    A parser's `read_words(parser, words)`, when set, rewrites the words before argparse
    reads them (`run http`: curl's -K/--config, --url, --json DATA); `usage_status`
    gives the exit status of a usage error from the words."""

    _seen: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._seen = list(sys.argv[1:] if args is None else args)  # for `error`
        read_words = getattr(self, "read_words", None)  # (`run http`: curl's -K, --json DATA)
        if read_words is not None:
            args = read_words(self, self._seen)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        native = sys.exc_info()[1]
        native = native.__context__ if native is not None else None
        if native is None and message.endswith(": expected one argument"):
            native = self._negative_value(message)
        if isinstance(native, NativeValueError):
            self.exit(native.status, f"{self.prog}: {native}\n")
        # argparse checks the operands before it reports options it does not know, so
        # `pktlab run ping --bogus` said "TARGET is required": name the bad option, as
        # ping's "invalid option" does.
        if message.startswith(("the following arguments are required", "one of the arguments")):
            bad = []
            for arg in self._seen:
                if arg == "--":
                    break
                try:
                    found = self._parse_optional(arg)
                except argparse.ArgumentError:  # an ambiguous abbreviation
                    continue
                if found is not None and found[0] is None and arg.startswith("-"):
                    bad.append(arg)
            if bad:
                message = f"unrecognized arguments: {' '.join(bad)}{_did_you_mean(self, bad)}"
        usage_status = getattr(self, "usage_status", None)  # (`run dns --dig-exit-codes`: 1)
        if usage_status is not None:
            self.print_usage(sys.stderr)
            self.exit(usage_status(self._seen), f"{self.prog}: error: {message}\n")
        super().error(message)

    def format_usage(self) -> str:
        """The usage above an error: argparse's lists every option (31 lines for `run
        http`) before the one line that matters; past one line, the operands alone and a
        pointer to --help (which keeps the whole usage)."""
        full = super().format_usage()
        if full.count("\n") <= 1:
            return full
        formatter = argparse.HelpFormatter(self.prog, width=10_000)  # the operands on one line
        formatter.add_usage(None, [a for a in self._actions if not a.option_strings], [])
        operands = formatter.format_help().strip().removeprefix(f"usage: {self.prog}").strip()
        return f"usage: {self.prog} [options] {operands}".rstrip() + " (-h lists the options)\n"

    def _negative_value(self, message: str) -> BaseException | None:
        """`ping -c -1`: argparse takes `-1` for an option (the parser has `-4`, `-6`) and
        says "expected one argument"; an option whose values are the native tool's
        (`NativeValueError`) judges it as the tool does (`out of range`)."""
        flags = message.removeprefix("argument ").removesuffix(": expected one argument")
        action = self._option_string_actions.get(flags.split("/")[0])
        if action is None or not callable(action.type):
            return None
        for at, word in enumerate(self._seen[:-1]):
            value = self._seen[at + 1]
            if word in action.option_strings and value[1:].isdigit() and value[0] == "-":
                try:
                    action.type(value)
                except NativeValueError as e:
                    return e
                except (argparse.ArgumentTypeError, ValueError, TypeError):
                    return None
        return None

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # An option's own value `--` (`-d--`, `--data=--`: `run http` joins a dash-leading
        # value to its option, as curl takes it): Python 3.11's argparse drops a `--` from
        # any values, and the action got [] (`pktlab run http -d -- URL`: an internal
        # AttributeError; fuzz28's http_opts target). A one-value option is handed `--`
        # only as its explicit value (a separate `--` never matches its argument).
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as e:
            choices = [c for c in action.choices or () if isinstance(c, str)]
            if not isinstance(value, str) or not choices:
                raise
            import difflib

            hint = difflib.get_close_matches(value, choices, n=1)
            if not hint:
                raise
            message = f"{e.message} (did you mean {hint[0]!r}?)"
            raise argparse.ArgumentError(action, message) from None


def _wrap_descriptions(parser: argparse.ArgumentParser) -> None:
    """A command whose help keeps its epilog as written (RawDescriptionHelpFormatter: the
    `run` measurements, `init`, `wrap`) keeps its one-paragraph description as written
    too, one line of up to 537 characters: fill it to the terminal, as argparse fills
    the rest of the help."""
    import shutil
    import textwrap

    width = max(min(shutil.get_terminal_size().columns - 2, 98), 40)
    todo = [parser]
    while todo:
        p = todo.pop()
        if p.description and "\n" not in p.description and len(p.description) > width:
            p.description = textwrap.fill(p.description, width)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())


def _command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The parser of the deepest sub-command on the command line (`pktlab run ping`)."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or chosen not in sub.choices:
            return parser
        parser = sub.choices[chosen]


def _did_you_mean(parser: argparse.ArgumentParser, bad: list[str]) -> str:
    """` (did you mean --count?)` for unknown options close to one of `parser`'s."""
    import difflib

    known = list(parser._option_string_actions)
    hints = []
    for word in bad:
        name = word.split("=", 1)[0]
        if not name.startswith("-"):
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        if near:
            hints.append(f"{near[0]} for {name}" if len(bad) > 1 else near[0])
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def main(argv: Sequence[str] | None = None) -> int:
    whole_process = argv is None  # the `pktlab` command itself, not a caller in a process
    argv = list(sys.argv[1:] if argv is None else argv)
    from packetlab.cli.interrupt import quit_on_interrupt

    quit_on_interrupt()
    if whole_process:
        _translate_once()
    if whole_process and _command_word(argv) == "run":
        # Before the parser's imports: argparse's help formatter imports shutil, and
        # shutil bz2, lzma and fnmatch, which a run never uses (~2 ms).
        from packetlab import lazyimports

        lazyimports.install()
    try:
        with _startup_gc(freeze=whole_process):
            args = parse(argv)
            module = importlib.import_module(args._module)
            _import_ahead(module, args, keep_code=whole_process)
        rc: int = module.run(args)
    except KeyboardInterrupt:  # Ctrl-C during start-up: no traceback
        print("\npktlab: interrupted", file=sys.stderr)
        return 130
    return rc


def _translate_once() -> None:
    """argparse translates each of its messages with `gettext.gettext`, which looks the
    message catalogue up again at every call (for LANG=C.UTF-8 a locale normalisation and
    two `stat`s: 45 calls and ~2 ms of a traceroute's parser, 67 of `run --help`'s): the
    catalogue is looked up once and its methods are argparse's. The same texts: `gettext`
    itself uses the message unchanged when there is no catalogue (`fallback`)."""
    import gettext

    domain = gettext.textdomain()
    catalogue = gettext.translation(domain, gettext.bindtextdomain(domain), fallback=True)
    # (module globals argparse looks up at each call; not in its stubs)
    argparse._ = catalogue.gettext  # type: ignore[attr-defined]
    argparse.ngettext = catalogue.ngettext  # type: ignore[attr-defined]


def _more_operands(args: argparse.Namespace, extra: list[str]) -> bool:
    """Operands given after an option (`pktlab run dns @127.0.0.1 -p 5353 a.test MX`,
    `pktlab run http --json URL1 -k URL2`) join the command's list of operands (names,
    URLs, addresses), as dig, curl and most native tools take them anywhere. False when
    the command has no such list or an unknown option is among them. A command with
    operands of its own shape (`pktlab run ping HOST -c 1 TARGET`, `pktlab run traceroute
    TARGET -n PACKETLEN`, as getopt permutes them for ping and traceroute) takes them
    with its `_take_operands(args, extra)`."""
    if any(e.startswith("-") and len(e) > 1 for e in extra):
        return False
    field = getattr(getattr(args, "_command", None), "split", None)
    if field is None:
        take = getattr(args, "_take_operands", None)
        return take is not None and bool(take(args, extra))
    getattr(args, field).extend(extra)
    return True


def _import_ahead(module: Any, args: argparse.Namespace, *, keep_code: bool = False) -> None:
    """Import now, with the command's own modules, those its run will import
    (`module.startup_imports(args)`, when the command says: `pktlab run` names its
    reactor, reports and in-process endpoint), so that they too load without cycle
    collections and are frozen. One that fails is left for the command, which then meets
    the error where it always did. With `keep_code` (the `pktlab` process itself), the
    methods of the classes such a command makes come compiled from `packetlab.classcode`'s
    table (~36 ms of CPU of a traceroute), and the modules of `packetlab.lazyimports`
    that Twisted imports but a run may not use are loaded on first use (~20 ms)."""
    ahead = getattr(module, "startup_imports", None)
    names = ahead(args) if ahead is not None else ()
    if names and keep_code:
        from packetlab import lazyimports
        from packetlab.classcode import keep_generated_code

        lazyimports.install()
        keep_generated_code()
    for name in names:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


@contextlib.contextmanager
def _startup_gc(*, freeze: bool) -> Iterator[None]:
    """No cycle collection while the command's modules are imported: ~500 modules of
    objects that live as long as the process, which the collector would traverse again
    and again for nothing. With `freeze` they are then frozen (`gc.freeze`), so that the
    collections of the run itself skip them too; not when main() is called by a program
    (tests), whose objects of the moment would never be collected."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


if __name__ == "__main__":
    sys.exit(main())
