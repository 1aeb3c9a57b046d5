import sys

from pinnsiren.cli import main

sys.exit(main())
