# The ring package: model, merge, lookup, shuffle sharding, tokens and codecs (dskit semantics).
# Owns nothing itself; the public names are re-exported from pyro_core/__init__.py.
