from ftc.cli import main
from ftc.exit import leave

leave(main())
