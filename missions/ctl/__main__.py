"""``python -m missions.ctl``: the same as the ``missionctl`` script."""

import sys

from missions.ctl import main

sys.exit(main())
