import sys

from pinnsiren.run.cli import main

sys.exit(main())
