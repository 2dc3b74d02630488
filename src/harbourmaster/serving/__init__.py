"""The serving replica: the data plane that answers production traffic.

One replica serves one environment. It reconciles toward the desired state in the
store (``reconciler``), validates input against each version's schema
(``validator``), routes between champion and challenger (``router``), falls back
to a failover version and rules when a model fails (``chain``), captures every
prediction asynchronously (``capture``) and exposes Prometheus metrics
(``metrics``). ``app`` is the lean ASGI face over all of that.
"""

from harbourmaster.serving.replica import Replica, ReplicaOptions

__all__ = ["Replica", "ReplicaOptions"]
