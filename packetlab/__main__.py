"""`python -m packetlab` and the `pktlab` command (setup.cfg's console script).

`packetlab.cli` is imported here, inside `main`, so that a Ctrl-C during that import
(the first ~50 ms of a run, before `cli.main` installs its own handling) ends with the
same one line and status 130 as later, not a KeyboardInterrupt traceback.
"""

import sys


def main() -> int:
    try:
        from packetlab.cli import main as cli_main
    except KeyboardInterrupt:
        print("\npktlab: interrupted", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
