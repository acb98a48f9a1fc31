"""`python -m klaviyo_simulator`: run the Klaviyo simulator in the foreground."""

import sys

from .command import main

sys.exit(main())
