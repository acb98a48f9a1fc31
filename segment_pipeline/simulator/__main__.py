"""`python -m segment_pipeline.simulator`: run the Klaviyo simulator in the foreground."""

import sys

from .cli import main

sys.exit(main())
