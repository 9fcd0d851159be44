"""Alembic environment: the URL comes from ``config.attributes["url"]`` (storage.migrate),
then ``-x url=...``, then ``DELTAMEM_DATABASE_URL``, then the ini's ``sqlalchemy.url``."""

from __future__ import annotations

import os

from alembic import context

from storage.engine import make_engine, normalize_url
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = (config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
           or os.environ.get("DELTAMEM_DATABASE_URL") or config.get_main_option("sqlalchemy.url"))
    if not url:
        raise SystemExit("no database URL: pass --db URL or set DELTAMEM_DATABASE_URL")
    return normalize_url(url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata,
                              render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
