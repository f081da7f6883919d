import sys

from remedies.cli import main

sys.exit(main())
