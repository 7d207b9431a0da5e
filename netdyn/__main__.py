import sys

from netdyn.cli import main

sys.exit(main())
