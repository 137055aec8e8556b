"""
The collaborators that :class:`tether.SessionManager` composes, one concern each.

Calls flow one way: the manager calls these, they call the policy layer
(:mod:`.calls`: retries and breakers), which calls providers, which call their
transport. Nothing here calls back into the manager.

- :mod:`.runtime`: what every collaborator shares (policies, clock, store, the
  sessions this manager tracks, whether it is open).
- :mod:`.bus`: lifecycle events to subscribers and instrumentation.
- :mod:`.slots`: the providers this manager runs (config, HTTP client, breaker).
- :mod:`.calls`: one provider call under the retry policy and circuit breakers.
- :mod:`.records`: writes to the store (versions, fencing) and what follows them.
- :mod:`.scheduler`: the deadline heap and the worker pool for background jobs.
- :mod:`.jobs`: a due job run under its lease; the watch sweep; pruning.
- :mod:`.health`: pings (ALIVE, DEGRADED, LOST, recovered).
- :mod:`.deadlines`: renewals, keepalive and expiry.
- :mod:`.creation`: create (validation, candidates and failover, admission,
  the write-ahead record, settling unknown outcomes).
- :mod:`.locate`: finding a remote session whose create answer was lost.
- :mod:`.closing`: closes, on request and on exit.
- :mod:`.reconcile`: the store against what each service reports.
- :mod:`.reports`: the values reconcile and snapshots return.
"""
