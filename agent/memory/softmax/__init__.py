"""The softmax rule with rehearsal: its write rule (:mod:`.rule`); the oracles, the rehearsal
kernel and the bounded reservoir are :mod:`agent.memory.naive`, :mod:`agent.memory.replay` and
:mod:`agent.memory.reservoir`."""
