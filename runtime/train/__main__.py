"""`python -m ftc.runtime.train --plan DIR`: the entry point that launch.sh starts."""

from .cli import main

raise SystemExit(main())
