"""deltamem's Python client for the HTTP API (DESIGN §7); a package of its own.

It imports httpx, Pydantic (the answers' models, :mod:`client.schema`; the server builds its
answers with the same ones), pyarrow and NumPy for Arrow bodies, and nothing of the server.

Every method returns a typed result (the answer models of :mod:`client.schema`) and raises :class:`DeltamemError` for
an error answer (its ``status``, ``code``, ``message``, ``field`` and the whole ``body``) or
when the service cannot be reached (``status`` 0, code ``unreachable``).

Examples
--------
>>> with Client("http://127.0.0.1:8000", admin_key="admin") as admin:  # doctest: +SKIP
...     key = admin.create_tenant("acme").api_key
>>> with Client("http://127.0.0.1:8000", api_key=key) as c:  # doctest: +SKIP
...     agent = c.create_agent("intents", kind="classifier", encoder="minilm")
...     c.ingest(agent.id, [{"id": "e1", "input": "hi there", "target": "greet"}])
...     c.predict(agent.id, ["hello"], min_version=1).predictions[0].label
'greet'
"""

from client.arrow import arrow_body
from client.errors import DeltamemError
from client.http import Client
from client.schema import (
    ARROW_COLUMNS,
    ARROW_STREAM,
    DEFAULT_URL,
    Agent,
    ForgetResult,
    IngestResult,
    Prediction,
    PredictResult,
    Rejected,
    RollbackResult,
    Tenant,
    VersionInfo,
    VersionList,
)

__all__ = ["ARROW_COLUMNS", "ARROW_STREAM", "DEFAULT_URL", "Agent", "Client", "DeltamemError",
           "ForgetResult", "IngestResult", "Prediction", "PredictResult", "Rejected",
           "RollbackResult", "Tenant", "VersionInfo", "VersionList", "arrow_body"]
