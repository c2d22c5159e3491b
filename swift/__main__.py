import sys

from swift.cli.main import main

sys.exit(main())
