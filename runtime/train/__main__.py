"""`python -m ftc.runtime.train --plan DIR`: the entry point that launch.sh starts."""

from ftc.exit import leave

from .cli import main

leave(main())
