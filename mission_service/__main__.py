import sys

from mission_service.cli import main

sys.exit(main())
