"""`python -m segments_api_simulator --port 8766`: run the Segments API simulator until Ctrl-C or SIGTERM."""

import sys

from .command import main

sys.exit(main())
