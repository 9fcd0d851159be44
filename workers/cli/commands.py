"""The ``deltamem`` subcommands (parsing is in ``workers.cli.main``).

Client commands talk HTTP through :class:`client.Client`; ``serve`` and ``demo`` start
the runtime in this process; ``db`` runs the Alembic migrations. (``bench``, ``eval`` and
``train-adapter`` are registered by the benchmarks package: :mod:`benchmarks.commands`.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent.errors import InputError
from client import Client, DeltamemError
from workers.cli.errors import CliError
from workers.cli.tables import format_table, version_table


def _settings(**overrides: Any) -> Any:
    from workers.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _client(args: argparse.Namespace, admin_key: str | None = None) -> Client:
    s = _settings()
    key = args.key if getattr(args, "key", None) else (
        s.api_key.get_secret_value() if s.api_key else None)
    admin = admin_key or (s.admin_key.get_secret_value() if s.admin_key else None)
    return Client(args.url or s.url, api_key=key, admin_key=admin, timeout=args.timeout)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def user_error_line(e: BaseException) -> str | None:
    """The one line a user error prints (None: not a user error, let it raise)."""
    from pydantic import ValidationError

    from workers.cli.files import FileError

    if isinstance(e, DeltamemError):
        where = f" (HTTP {e.status})" if e.status else ""
        return (f"{e.field}: {e.message}" if e.field else e.message) + where
    if isinstance(e, (CliError, FileError)):
        return str(e)
    from storage.errors import StorageError

    if isinstance(e, StorageError):
        field = getattr(e, "field", None)
        return f"{field}: {e}" if field else str(e)
    if isinstance(e, InputError):
        return f"{e.field}: {e.message}"
    if isinstance(e, ValidationError):
        err = e.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        return f"{field}: {err.get('msg')} (got {err.get('input')!r})" if field != "admin_key" \
            and field != "api_key" else f"{field}: {err.get('msg')}"
    if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)):
        # raised without errno/filename (e.g. by a library) the message is all there is
        return f"{e.filename}: {e.strerror}" if e.filename is not None else str(e) or type(e).__name__
    if isinstance(e, ModuleNotFoundError) and (e.name or "").startswith("benchmarks"):
        return f"{e.name}: not available in this installation"
    return None


# ---- service ------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(host=args.host, port=args.port, database_url=args.db,
                         http_workers=args.http_workers)
    from workers.runtime import serve_forever

    return serve_forever(settings)


def cmd_demo(args: argparse.Namespace) -> int:
    from workers.cli.demo import main as demo_main

    return demo_main(args)


# ---- events and predictions ---------------------------------------------------------------

def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workers.cli.files import (
        batches,
        count_lines,
        detect_format,
        read_events,
        read_table_file,
        source_name,
        table_events,
    )

    if args.batch_size < 1:
        raise CliError("expected an integer >= 1", "--batch-size")
    fmt = detect_format(args.file, args.format)
    name = source_name(args.file)
    tabular = fmt in ("parquet", "arrow")
    if tabular and args.file == "-":
        raise CliError(f"{fmt} is read from a file, not stdin", "file")
    with _client(args) as c:
        agent = c.get_agent(args.agent)
        table = read_table_file(args.file, fmt) if tabular else None
        total = table.num_rows if table is not None else count_lines(args.file)
        stream = sys.stdin if args.file == "-" or tabular else \
            open(args.file, encoding="utf-8-sig", newline="")
        sums = {"accepted": 0, "duplicates": 0, "rejected": 0}
        try:
            bar = tqdm(total=total, unit="line", file=sys.stderr, disable=args.no_progress or None,
                       desc=name)
            events = table_events(table, name) if table is not None else \
                read_events(stream, name, fmt, vector=agent.encoder == "none")
            for batch in batches(events, args.batch_size):
                try:
                    res = _send(c, args, [ev for _, ev in batch], agent.encoder == "none")
                except DeltamemError as e:
                    raise _located(e, name, batch) from None
                sums["accepted"] += res.accepted
                sums["duplicates"] += res.duplicates
                sums["rejected"] += len(res.rejected)
                for r in res.rejected:
                    print(f"rejected {name}:{batch[r.index][0]}: {r.error}", file=sys.stderr)
                bar.update(batch[-1][0] - bar.n if total else len(batch))
            bar.close()
        finally:
            if stream is not sys.stdin:
                stream.close()
    print(f"{sums['accepted']} accepted, {sums['duplicates']} duplicates, "
          f"{sums['rejected']} rejected")
    return 1 if sums["rejected"] else 0


def _send(c: Any, args: argparse.Namespace, events: list[dict[str, Any]], vector: bool) -> Any:
    """One batch: an Arrow IPC body for a vector agent (compact, checked a column at a time),
    JSON otherwise or when a vector holds something other than numbers (JSON names it)."""
    if vector:
        from client import arrow_body

        try:
            body = arrow_body(events)
        except (ValueError, OverflowError, TypeError):
            body = None
        if body is not None:
            try:
                return c.ingest_arrow(args.agent, body, partial=args.partial)
            except DeltamemError as e:
                if e.status != 415:  # 415: a service without Arrow bodies gets JSON
                    raise
    return c.ingest(args.agent, events, partial=args.partial)


def _located(e: DeltamemError, name: str, batch: list[tuple[int, dict[str, Any]]]) -> Exception:
    """Name the file line of the first rejected event of a refused batch."""
    rejected = (e.body or {}).get("rejected") if isinstance(e.body, dict) else None
    if rejected:
        r = rejected[0]
        i = r.get("index", 0)
        line = batch[i][0] if 0 <= i < len(batch) else "?"
        return CliError(f"{r.get('error')} (batch refused, nothing in it stored; fix the line "
                        f"and re-run: events already sent count as duplicates)", f"{name}:{line}")
    return e


def _parse_input(text: str) -> Any:
    if text.lstrip().startswith("["):
        try:
            v = json.loads(text)
        except ValueError:
            return text
        if isinstance(v, list):
            return v
    return text


def cmd_predict(args: argparse.Namespace) -> int:
    with _client(args) as c:
        inputs = [_parse_input(x) for x in args.inputs]
        res = c.predict(args.agent, inputs, version=args.version, min_version=args.min_version,
                        as_of=args.as_of, top_k=args.top_k, wait_ms=args.wait_ms)
    if args.json:
        _print_json({"version": res.version, "predictions": [p.__dict__ for p in res.predictions]})
        return 0
    rows = []
    for text, p in zip(args.inputs, res.predictions, strict=False):
        shown = text if len(text) <= 40 else text[:37] + "..."
        answer = p.text if p.text is not None else p.label
        top = ", ".join(f"{lab} {sc:.3f}" for lab, sc in p.top) if p.top else None
        rows.append([shown, answer, p.score] + ([top] if args.top_k else []))
    print(f"version {res.version}")
    print(format_table(["input", "answer", "score"] + (["top"] if args.top_k else []), rows))
    return 0


# ---- versions -----------------------------------------------------------------------------

def cmd_versions(args: argparse.Namespace) -> int:
    with _client(args) as c:
        vl = c.versions(args.agent, limit=args.limit, before=args.before)
    if args.json:
        _print_json({"head": vl.head, "versions": [v.__dict__ for v in vl.versions]})
        return 0
    print(f"head {vl.head}")
    print(version_table(vl.versions))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with _client(args) as c:
        r = c.rollback(args.agent, args.version)
    print(f"version {r.version}: rollback to the state of version {r.state_of} "
          f"(checksum {r.checksum[:12]})")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    with _client(args) as c:
        r = c.forget(args.agent, args.event_ids)
    print(f"version {r.version}: forgot {r.events_removed} event(s)")
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    with _client(args) as c:
        a = c.fork(args.agent, args.name, version=args.version)
    print(f"{a.id}  {a.name}  (fork at head version {a.head_version})")
    return 0


# ---- agents, tenants, keys ----------------------------------------------------------------

def _agent_row(a: Any) -> list[Any]:
    return [a.id, a.name, a.kind, a.encoder, a.dim, a.memory.get("rule"), a.head_version,
            a.events_received, a.events_applied, len(a.labels)]


AGENT_HEADERS = ["id", "name", "kind", "encoder", "dim", "rule", "head", "received", "applied",
                 "labels"]


def cmd_agents(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action == "list":
            print(format_table(AGENT_HEADERS, [_agent_row(a) for a in c.list_agents()]))
            return 0
        if args.action == "show":
            _print_json(c.get_agent(args.agent).__dict__)
            return 0
        memory = {k: getattr(args, k) for k in ("rule", "beta", "decay", "ridge", "forget",
                                                "lift_dim", "replay") if getattr(args, k) is not None}
        a = c.create_agent(args.name, kind=args.kind, encoder=args.encoder, dim=args.dim,
                           memory=memory or None, **_config_option(args.config))
    if args.json:
        _print_json(a.__dict__)
    else:
        print(f"{a.id}  {a.name}  ({a.kind}, encoder {a.encoder}, dim {a.dim})")
    return 0


def _config_option(text: str | None) -> dict[str, Any]:
    """``agents create --config JSON``: an object of settings (not name, kind, encoder, dim
    or memory, which have their own flags)."""
    if text is None:
        return {}
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"not JSON: {e}", "--config") from None
    if not isinstance(extra, dict):
        raise CliError("expected a JSON object", "--config")
    own = sorted(set(extra) & {"name", "kind", "encoder", "dim", "memory"})
    if own:
        raise CliError(f"{own[0]!r} has its own flag", "--config")
    return extra


def cmd_tenants(args: argparse.Namespace) -> int:
    if args.action == "list":
        with _repository(args) as repo:
            rows = [[t.id, t.name, str(t.created_at)[:19]] for t in repo.list_tenants()]
        print(format_table(["id", "name", "created (UTC)"], rows))
        return 0
    with _client(args, admin_key=args.admin_key) as c:
        t = c.create_tenant(args.name)
    print(f"tenant {t.id} ({t.name})")
    print(f"api key (shown once, keep it): {t.api_key}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    with _repository(args) as repo:
        if args.action == "create":
            key = repo.create_key(args.tenant)
            print(f"api key for {args.tenant} (shown once, keep it): {key}")
            return 0
        key = sys.stdin.readline().strip() if args.key == "-" else args.key
        if not repo.revoke_key(key):
            raise CliError("unknown or already revoked", "key")
    print("key revoked")
    return 0


@contextmanager
def _repository(args: argparse.Namespace) -> Iterator[Any]:
    """A repository on the configured database, in one transaction (committed on success)."""
    from storage.engine import Database
    from storage.repository import unit_of_work

    db = Database(_settings(database_url=args.db).database_url)
    try:
        with unit_of_work(db) as repo:
            yield repo
    finally:
        db.dispose()


# ---- database -----------------------------------------------------------------------------

def cmd_db(args: argparse.Namespace) -> int:
    from storage import migrate

    url = _settings(database_url=args.db).database_url
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision)
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision)
    print(f"database at revision {migrate.current(url) or 'base (empty)'}")
    return 0


HANDLERS = {"serve": cmd_serve, "demo": cmd_demo, "ingest": cmd_ingest, "predict": cmd_predict,
            "versions": cmd_versions, "rollback": cmd_rollback, "forget": cmd_forget,
            "fork": cmd_fork, "agents": cmd_agents, "tenants": cmd_tenants, "keys": cmd_keys,
            "db": cmd_db}
