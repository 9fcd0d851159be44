"""The softmax rule with rehearsal (classifiers):

* :mod:`.naive`: the oracles (float64 loops, plain-integer hashes);
* :mod:`.replay`: the rehearsal kernel over every event learnt;
* :mod:`.reservoir`: the bounded rehearsal memory (slots per label);
* :mod:`.rule`: :class:`~agent.memory.softmax.rule.SoftmaxRule`, the agent's write rule.
"""
