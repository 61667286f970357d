# `python -m pyro_core.plan plan ...` / `python -m pyro_core.plan bench ...`.
# Owns: nothing but the entry point. Must not know: anything else.
import sys

from pyro_core.plan.cli import main

sys.exit(main())
