import sys

from packetlab.cli import main

sys.exit(main())
