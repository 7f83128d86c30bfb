"""``python -m crewai_rust status|bench|memory-export``."""

import sys

from crewai_rust.cli import main

sys.exit(main())
