"""RLS, the preconditioned delta rule with forgetting: its write rule (:mod:`.rule`); the oracle,
the Woodbury chunk form and pending rows are :mod:`agent.memory.naive`,
:mod:`agent.memory.chunk` and :mod:`agent.memory.pending` (derivation: ``agent/memory/README.md`` §2)."""
