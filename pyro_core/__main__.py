# ``python -m pyro_core``: the same as the ``pyro-core`` command.
from pyro_core.cli import main

raise SystemExit(main())
