import sys

from worker_service.cli import main

sys.exit(main())
