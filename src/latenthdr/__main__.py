import sys

from latenthdr.cli import main

sys.exit(main())
