# The wording of quorum errors shared by both kernel twins.
# Owns: dskit's "at least N live replicas required" message. The ReplicationSet type itself is a
# kernel type (pyro_core._ring.ReplicationSet / pyro_core._pure.ring.ReplicationSet) so the
# compiled lookup can build one without Python-level calls.
from __future__ import annotations


def not_enough_replicas_message(min_success: int, found: int, unhealthy: list[str], zone_aware: bool) -> str:
    where = " across different availability zones" if zone_aware else ""
    msg = f"at least {min_success} live replicas required{where}, could only find {found}"
    if unhealthy:
        msg += " - unhealthy instances: " + ",".join(unhealthy)
    return msg
