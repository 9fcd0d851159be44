"""The gated delta rule ``S ← α·S + β·(v − α·S k)kᵀ``: its write rule (:mod:`.rule`); the
oracle and the chunk (WY/UT) form are :mod:`agent.memory.naive` and :mod:`agent.memory.chunk`
(derivation: ``agent/memory/README.md`` §1)."""
