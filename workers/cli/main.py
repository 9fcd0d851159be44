"""The ``deltamem`` command line: argument parsing and the error policy.

Every subcommand has ``--help`` with an example. Settings come from flags, else ``DELTAMEM_*``
environment variables (``DELTAMEM_URL``, ``DELTAMEM_API_KEY``, ``DELTAMEM_ADMIN_KEY``,
``DELTAMEM_DATABASE_URL``, ...). A user error exits non-zero with one line on stderr,
``error: <field>: <message>``, never a traceback. The commands live in ``workers.cli.commands``;
``bench``, ``eval`` and ``train-adapter`` come from the entry point group ``deltamem.commands``
(registered by the ``benchmarks`` package).

Examples
--------
>>> args = build_parser().parse_args(["predict", "a1", "hello", "--top-k", "3"])
>>> args.command, args.agent, args.inputs, args.top_k
('predict', 'a1', ['hello'], 3)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from workers.cli.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR

PLUGIN_GROUP = "deltamem.commands"


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _sub(subs: Any, name: str, help_: str, example: str,
         parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    return subs.add_parser(name, help=help_, description=help_, parents=list(parents),
                           epilog=f"example:\n  {example}", formatter_class=_formatter)


def _client_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    g.add_argument("--url", help="the service (env DELTAMEM_URL; default http://127.0.0.1:8000)")
    g.add_argument("--key", help="a tenant API key (env DELTAMEM_API_KEY)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    return p


def _db_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", metavar="URL", help="database URL (env DELTAMEM_DATABASE_URL; "
                   "default sqlite:///deltamem.db)")
    return p


def _add_plugins(subs: Any) -> None:
    """The subcommands other installed packages register under the entry point group
    ``deltamem.commands`` (the benchmarks add ``bench``, ``eval``, ``train-adapter``): each is
    an object with ``help``, ``example``, ``add_arguments(parser)`` and ``run(args)``."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            cmd = ep.load()
        except ImportError:  # registered but not importable here: leave the command out
            continue
        p = _sub(subs, ep.name, cmd.help, cmd.example)
        cmd.add_arguments(p)
        p.set_defaults(plugin_run=cmd.run)


def _add_service(subs: Any, db: argparse.ArgumentParser) -> None:
    p = _sub(subs, "serve", "run the service in the foreground (Ray, HTTP, scheduler) until "
             "SIGTERM/SIGINT", "deltamem serve --port 8000 --db sqlite:///deltamem.db", [db])
    p.add_argument("--host", help="address to listen on (env DELTAMEM_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env DELTAMEM_PORT; default 8000)")
    p.add_argument("--http-workers", type=int, help="HTTP server processes on the port (env "
                   "DELTAMEM_HTTP_WORKERS; default 1): more answer more clients at once")

    p = _sub(subs, "demo", "start the service on embedded defaults and show it learning, "
             "correcting, rolling back", "deltamem demo", [db])
    p.add_argument("--port", type=int, help="port (default 8000, or a free one if it is taken)")
    p.add_argument("--quick", action="store_true", help="stream fewer events (for CI)")


def _add_ingest(subs: Any, client: argparse.ArgumentParser) -> None:
    p = _sub(subs, "ingest", "stream events from a JSONL, CSV, Parquet or Arrow file (or - for stdin)",
             "deltamem ingest a1b2 events.jsonl --batch-size 500\n"
             "  (events without an id get <file basename>:<line>, so a re-run only adds "
             "what is new)", [client])
    p.add_argument("agent", help="agent id")
    p.add_argument("file", help="a .jsonl, .csv, .parquet or .arrow file, or - for stdin")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet", "arrow"],
                   help="default: by extension (jsonl)")
    p.add_argument("--batch-size", type=int, default=500, help="events per request (default 500)")
    p.add_argument("--partial", action="store_true",
                   help="accept the valid events of a batch and report the invalid ones")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _add_predict(subs: Any, client: argparse.ArgumentParser) -> None:
    p = _sub(subs, "predict", "ask an agent; prints label and score per input",
             "deltamem predict a1b2 'where is my card?' --top-k 3", [client])
    p.add_argument("agent", help="agent id")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="text, or a JSON list of numbers for a vector agent")
    p.add_argument("--version", type=int, help="pin this version")
    p.add_argument("--min-version", type=int, help="wait until this version is served")
    p.add_argument("--as-of", help="ISO-8601 time: the last version committed at or before it")
    p.add_argument("--top-k", type=int, help="also list the k best labels")
    p.add_argument("--wait-ms", type=int, help="how long --min-version waits")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")


def _add_versions(subs: Any, client: argparse.ArgumentParser) -> None:
    """versions, rollback, forget, fork."""
    p = _sub(subs, "versions", "an agent's version history as a table",
             "deltamem versions a1b2 --limit 20", [client])
    p.add_argument("agent", help="agent id")
    p.add_argument("--limit", type=int, help="at most this many, newest first")
    p.add_argument("--before", type=int, help="only versions below this one")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")

    p = _sub(subs, "rollback", "make a new version whose state equals VERSION's",
             "deltamem rollback a1b2 12", [client])
    p.add_argument("agent", help="agent id")
    p.add_argument("version", type=int, help="the version to go back to")

    p = _sub(subs, "forget", "rebuild an agent without the given events (exact unlearning)",
             "deltamem forget a1b2 ev-17 ev-18", [client])
    p.add_argument("agent", help="agent id")
    p.add_argument("event_ids", nargs="+", metavar="ID", help="event ids")

    p = _sub(subs, "fork", "a new agent starting from another's state",
             "deltamem fork a1b2 experiment --version 12", [client])
    p.add_argument("agent", help="the source agent id")
    p.add_argument("name", help="the new agent's name")
    p.add_argument("--version", type=int, help="the source version (default: head)")


def _add_agents(subs: Any, client: argparse.ArgumentParser) -> None:
    p = _sub(subs, "agents", "list, create and show agents", "deltamem agents create intents "
             "--kind classifier --encoder minilm")
    asubs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    _sub(asubs, "list", "the tenant's agents", "deltamem agents list", [client])
    a = _sub(asubs, "show", "one agent", "deltamem agents show a1b2", [client])
    a.add_argument("agent", help="agent id")
    a = _sub(asubs, "create", "create an agent", "deltamem agents create vecs --kind classifier "
             "--encoder none --dim 64 --rule rls", [client])
    a.add_argument("name")
    a.add_argument("--kind", choices=["classifier", "recall", "chat"], default="classifier")
    a.add_argument("--encoder", choices=["minilm", "none"], default="minilm")
    a.add_argument("--dim", type=int, help='input dimension (required with --encoder none)')
    a.add_argument("--rule", choices=["delta", "rls", "softmax"])
    for name in ("beta", "decay", "ridge", "forget"):
        a.add_argument(f"--{name}", type=float, help=f"memory.{name}")
    a.add_argument("--lift-dim", type=int, help="memory.lift_dim")
    a.add_argument("--replay", type=int, help="memory.replay (rule softmax)")
    a.add_argument("--config", metavar="JSON", help="more settings, a JSON object merged into "
                   'the body: e.g. \'{"guard": {"action": "rollback"}}\', \'{"prompt": '
                   '{"recent": 0}}\' (chat), \'{"standardize": true}\'')
    a.add_argument("--json", action="store_true", help="print the raw JSON answer")


def _add_tenants_and_keys(subs: Any, client: argparse.ArgumentParser,
                          db: argparse.ArgumentParser) -> None:
    p = _sub(subs, "tenants", "create tenants (over HTTP, with the admin key) and list them",
             "DELTAMEM_ADMIN_KEY=... deltamem tenants create acme")
    tsubs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = _sub(tsubs, "create", "create a tenant and print its API key (shown once)",
             "deltamem tenants create acme --admin-key $ADMIN", [client])
    t.add_argument("name")
    t.add_argument("--admin-key", help="the admin key (env DELTAMEM_ADMIN_KEY)")
    _sub(tsubs, "list", "list the tenants (directly on the database)",
         "deltamem tenants list --db sqlite:///deltamem.db", [db])

    p = _sub(subs, "keys", "API keys, directly on the database (the operator's tool)",
             "deltamem keys create tn_0123abcd --db sqlite:///deltamem.db")
    ksubs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    k = _sub(ksubs, "create", "another API key for a tenant (printed once)",
             "deltamem keys create tn_0123abcd", [db])
    k.add_argument("tenant", help="tenant id")
    k = _sub(ksubs, "revoke", "revoke an API key (read from stdin when KEY is -)",
             "echo $OLD_KEY | deltamem keys revoke -", [db])
    k.add_argument("key", help="the key, or - to read it from stdin (keeps it out of shell history)")


def _add_db(subs: Any, db: argparse.ArgumentParser) -> None:
    p = _sub(subs, "db", "database schema migrations (Alembic)", "deltamem db upgrade --db "
             "postgresql://user@localhost/deltamem")
    dsubs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = _sub(dsubs, "upgrade", "migrate up (default: to the newest revision)",
             "deltamem db upgrade --db sqlite:///deltamem.db", [db])
    d.add_argument("revision", nargs="?", default="head")
    d = _sub(dsubs, "downgrade", "migrate down to REVISION ('base' drops everything)",
             "deltamem db downgrade base --db sqlite:///deltamem.db", [db])
    d.add_argument("revision")
    _sub(dsubs, "current", "print the database's revision", "deltamem db current", [db])


def build_parser() -> argparse.ArgumentParser:
    """The whole ``deltamem`` argument parser: one builder per group of subcommands."""
    client, db = _client_parent(), _db_parent()
    parser = argparse.ArgumentParser(
        prog="deltamem", formatter_class=_formatter,
        description="deltamem: online continual learning on versioned delta-rule memory.",
        epilog="start here:\n  deltamem demo\n\nsee `deltamem COMMAND --help` for each command.")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_service(subs, db)
    _add_ingest(subs, client)
    _add_predict(subs, client)
    _add_versions(subs, client)
    _add_agents(subs, client)
    _add_tenants_and_keys(subs, client, db)
    _add_db(subs, db)
    _add_plugins(subs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deltamem`` console script; returns the exit status."""
    from workers.cli import commands as cli_commands

    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = (
        getattr(args, "plugin_run", None) or cli_commands.HANDLERS[args.command])
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as e:  # user errors: one line, no traceback
        line = cli_commands.user_error_line(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR


def entry() -> None:
    """``python -m workers.cli``."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
