"""``deltamem demo``: the main job, end to end, on embedded defaults.

It starts the service in this process (SQLite file in the working directory, local Ray, HTTP on
127.0.0.1:8000 or a free port), creates a tenant and two text agents, and then

1. streams a built-in set of 150 short customer-service utterances (10 intents) into a
   classifier, printing prequential accuracy per slice (each slice is predicted *before* it is
   learned), so the table shows the agent improving as events arrive;
2. teaches a recall agent 20 question → answer facts, corrects one fact with a single event and
   shows the answer change, rolls back to the version before the correction and shows the old
   answer return (a pinned query at the old version answers the same);
3. prints the version history as a table and stops everything (exit 0; 1 if the service did not
   behave as described).

The interaction set ships in the package (``workers/cli/data/demo_*.jsonl``): no network needed.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import time
from importlib.resources import files
from typing import Any

from client import Client
from workers.cli.tables import format_table, version_table

SLICE = 15
CORRECTION = ("Where is the team offsite this year?", "Porto")


def load(name: str) -> list[dict[str, Any]]:
    """A built-in interaction set: ``intents`` or ``facts``.

    >>> len(load("intents")), len(load("facts"))
    (150, 20)
    """
    text = (files("workers.cli.data") / f"demo_{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def say(msg: str) -> None:
    print(msg, flush=True)


def wait_applied(c: Client, agent_id: str, n: int, timeout: float = 300.0) -> int:
    """Wait until ``n`` events of the agent are committed; return its head version."""
    deadline = time.monotonic() + timeout
    while True:
        a = c.get_agent(agent_id)
        if a.events_applied >= n:
            return a.head_version
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {a.events_applied} of {n} events applied after {timeout:.0f} s")
        time.sleep(0.1)


def stream_intents(c: Client, quick: bool) -> list[list[Any]]:
    """Learn the intents slice by slice; return the prequential accuracy table's rows."""
    events = load("intents")
    random.Random(7).shuffle(events)
    if quick:
        events = events[:90]
    for i, ev in enumerate(events):
        ev["id"] = f"intent-{i}"
    agent = c.create_agent("demo-intents", kind="classifier", encoder="minilm")
    say(f"created classifier agent {agent.id} (encoder minilm); streaming {len(events)} "
        f"utterances in slices of {SLICE}")
    rows: list[list[Any]] = []
    head = 0
    for s in range(0, len(events), SLICE):
        chunk = events[s:s + SLICE]
        pred = c.predict(agent.id, [e["input"] for e in chunk], min_version=head)
        right = sum(p.label == e["target"] for p, e in zip(pred.predictions, chunk, strict=False))
        c.ingest(agent.id, chunk)
        head = wait_applied(c, agent.id, s + len(chunk))
        rows.append([s // SLICE + 1, s, pred.version, f"{right}/{len(chunk)}", right / len(chunk)])
        say(f"  slice {s // SLICE + 1}: {right}/{len(chunk)} right before learning it; "
            f"now at version {head}")
    return rows


def ask(c: Client, agent_id: str, question: str, **kw: Any) -> tuple[str | None, int]:
    res = c.predict(agent_id, [question], **kw)
    return res.predictions[0].label, res.version


def facts_story(c: Client) -> bool:
    """Teach facts, correct one, roll back; True when every step answered as expected."""
    facts = load("facts")
    for i, ev in enumerate(facts):
        ev["id"] = f"fact-{i}"
    agent = c.create_agent("demo-facts", kind="recall", encoder="minilm")
    say(f"\ncreated recall agent {agent.id}; teaching {len(facts)} facts")
    c.ingest(agent.id, facts)
    head = wait_applied(c, agent.id, len(facts))
    pred = c.predict(agent.id, [f["input"] for f in facts], min_version=head)
    right = sum(p.label == f["target"] for p, f in zip(pred.predictions, facts, strict=False))
    say(f"  recall of the {len(facts)} facts at version {pred.version}: {right}/{len(facts)}")

    question, new = CORRECTION
    old = next(f["target"] for f in facts if f["input"] == question)
    before, v_before = ask(c, agent.id, question, min_version=head)
    say(f'  Q: "{question}"  ->  "{before}"  (version {v_before})')
    say(f'correcting the fact: "{new}" (one event, beta 1.0)')
    c.ingest(agent.id, [{"id": "fact-correction-1", "input": question, "target": new, "beta": 1.0}])
    head = wait_applied(c, agent.id, len(facts) + 1)
    after, v_after = ask(c, agent.id, question, min_version=head)
    say(f'  Q: "{question}"  ->  "{after}"  (version {v_after})')
    pinned, v_pinned = ask(c, agent.id, question, version=v_before)
    say(f'  the same question pinned at version {v_pinned}  ->  "{pinned}"')
    rb = c.rollback(agent.id, v_before)
    say(f"rolled back: version {rb.version} has the state of version {rb.state_of}")
    back, v_back = ask(c, agent.id, question, min_version=rb.version)
    say(f'  Q: "{question}"  ->  "{back}"  (version {v_back})')

    vl = c.versions(agent.id)
    say(f"\nversion history of {agent.id} (head {vl.head}):")
    say(version_table(vl.versions))
    ok = before == old and after == new and pinned == old and back == old
    if not ok:
        say(f"unexpected answers: before={before!r} after={after!r} pinned={pinned!r} "
            f"back={back!r} (expected {old!r}, {new!r}, {old!r}, {old!r})")
    return ok


def _settings(args: argparse.Namespace | None) -> tuple[Any, str]:
    from workers.runtime import free_port, port_is_free
    from workers.settings import Settings

    over: dict[str, Any] = {}
    if args is not None and getattr(args, "db", None):
        over["database_url"] = args.db
    if args is not None and getattr(args, "port", None) is not None:
        over["port"] = args.port
    s = Settings(**over)
    note = ""
    if s.port != 0 and not port_is_free(s.host, s.port):
        port = free_port(s.host)
        note = f"port {s.port} is taken; using {port} instead"
        s = s.model_copy(update={"port": port})
    if s.admin_key is None:
        from pydantic import SecretStr

        s = s.model_copy(update={"admin_key": SecretStr(secrets.token_urlsafe(24))})
    return s, note


def main(args: argparse.Namespace | None = None) -> int:
    """Run the demo; returns the exit status."""
    from workers.runtime import start

    settings, note = _settings(args)
    quick = bool(getattr(args, "quick", False))
    if note:
        say(note)
    say(f"starting deltamem: database {settings.database_url}, local Ray, "
        f"HTTP on {settings.host}:{settings.port} ...")
    t0 = time.monotonic()
    running = start(settings)
    ok = False
    try:
        say(f"service up at {running.url} ({time.monotonic() - t0:.1f} s)")
        admin_key = settings.admin_key.get_secret_value()
        with Client(running.url, admin_key=admin_key, timeout=300) as admin:
            tenant = admin.create_tenant(f"demo-{int(time.time())}")
        say(f"created tenant {tenant.id}")
        with Client(running.url, api_key=tenant.api_key, timeout=300) as c:
            rows = stream_intents(c, quick)
            say("\nprequential accuracy (each slice predicted before it is learned):")
            say(format_table(["slice", "events seen", "version", "right", "accuracy"], rows))
            ok = facts_story(c)
    finally:
        say("stopping the service ...")
        running.stop()
        say(f"stopped; demo took {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
