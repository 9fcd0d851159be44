"""RLS, the preconditioned delta rule with forgetting (derivation: ``agent/memory/README.md`` §2):

* :mod:`.naive`: the oracle, a float64 loop of single writes;
* :mod:`.chunk`: the Woodbury chunk form (deltas of ``S`` and ``P``);
* :mod:`.pending`: pending rows, ``P − QᵀQ`` folded every ~256 events;
* :mod:`.rule`: :class:`~agent.memory.rls.rule.RlsRule`, the agent's write rule.
"""
