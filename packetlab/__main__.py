"""`python -m packetlab` and the `pktlab` command (setup.cfg's console script).

A Ctrl-C from the import of `packetlab` on (the console script's first line of ours)
ends with one line and status 130 (`packetlab._arm_early_interrupt`; here for `python -m
packetlab`, whose argv[0] is still "-m" when the package is imported). `packetlab.cli`
is imported inside `main`, so that a KeyboardInterrupt raised in that import all the
same (a handler other than Python's default was in place) ends the same way.
"""

import sys

if __name__ == "__main__":
    import packetlab

    packetlab._arm_early_interrupt(force=True)


def main() -> int:
    try:
        from packetlab.cli import main as cli_main
    except KeyboardInterrupt:
        print("\npktlab: interrupted", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
