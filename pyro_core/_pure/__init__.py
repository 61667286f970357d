# The pure-Python twins of pyro_core's Cython kernels.
# Owns: nothing of its own; each module here mirrors one compiled module (``pyro_core._<name>``)
# name for name, reads like the spec, and is what ``PYRO_CORE_PURE=1`` selects.
