"""The scheduler's job store and its lease."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Double, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.columns import Base


class SchedulerJob(Base):
    """APScheduler's job table (``workers.actors.scheduler.JsonJobStore``): the job state is JSON
    bytes, never a pickle. Column names and types are the ones APScheduler's store expects."""

    __tablename__ = "scheduler_jobs"

    id: Mapped[str] = mapped_column(String(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Double, index=True, default=None)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class SchedulerLease(Base):
    """The one scheduler that acts for a deployment holds this lease until ``expires_at``."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
