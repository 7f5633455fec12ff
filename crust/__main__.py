import sys

from crust.cli import main

sys.exit(main())
