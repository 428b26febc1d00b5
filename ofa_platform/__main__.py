import sys

from ofa_platform.cli import main

sys.exit(main())
