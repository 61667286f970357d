# The gossiped key-value store (dskit memberlist KV) and the ring lifecycle on top of it, sans-I/O.
# store.py: KVStore (codecs, CAS as data + CasOperation retry loop, watchers, merge + forward of the
# computed change, local/gossip broadcast queues, the memberlist Delegate, stats).
# lifecycler.py: Lifecycler (register / heartbeat + auto-forget / leave / unregister over the store,
# next_deadline / handle_timer, a Ring view) and ring_metrics (dskit's ring_* gauges).
