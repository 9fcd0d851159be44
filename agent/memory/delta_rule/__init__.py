"""The gated delta rule ``S ← α·S + β·(v − α·S k)kᵀ`` (derivation: ``agent/memory/README.md`` §1):

* :mod:`.naive`: the oracle, a float64 loop of single writes;
* :mod:`.chunk`: the chunk (WY/UT) form, one delta per micro-batch;
* :mod:`.many`: many small states at once (δ-mem), recurrent and chunk forms, batched reads;
* :mod:`.rule`: :class:`~agent.memory.delta_rule.rule.DeltaRule`, the agent's write rule.
"""
