# The trio shells: transports that move memberlist packets and streams (UDP+TCP, dskit TCP with
# optional TLS, in-memory), DNS discovery, and the node runner that drives the sans-I/O core.
