"""The Ray actors and what runs inside them: ingest, learner, serving, encoder, the scheduler.

An event's way: ``ingest`` (group commit, then the learner's inbox) → ``learner`` (micro-batch,
pretest, poison bisect, guard, one version per batch) → ``serving`` (composed states per version).
``factory`` builds the in-memory learner of an agent's config for all of them.
"""
