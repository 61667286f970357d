# The memberlist layer: SWIM membership and gossip, sans-I/O (wire codec, node-state rules,
# suspicion, awareness, broadcast queue). The trio shells that move bytes live elsewhere.
