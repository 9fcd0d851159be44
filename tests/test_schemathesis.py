"""Fault class 6 of issue 15: ``/openapi.json`` is true of the running service.

Schemathesis (the installed 4.x CLI, ``st run``) reads the document from the real service
(Ray actors, uvicorn, SQLite and PostgreSQL) and runs every phase the document allows —
``coverage`` (boundary and invalid values of every keyword, undeclared methods), ``fuzzing``
(Hypothesis, positive and negative cases), ``stateful`` (the OpenAPI links from a created
agent to the operations on it) — with **all** checks (``--checks all``): no 5xx; statuses,
content types, headers and bodies as documented; schema-valid requests accepted and invalid
ones refused; ``Allow`` on ``OPTIONS`` and 405; created resources reachable; auth not ignored.
(``examples`` runs too, on the examples the document declares.) About 3,000 cases a run,
under a minute a backend here.

The only departures, each fitted here rather than hidden, because OpenAPI cannot state them:

1. ``POST /v1/agents/{agent_id}/events`` and ``/predict``: whether an ``input`` is valid depends
   on the agent (its ``dim`` and ``encoder``, stored server side), so a schema-valid body may
   rightly be 422 there: ``positive_data_acceptance`` also accepts 422 on those two.
2. ``ensure_resource_availability`` is off for ``/predict``, ``/rollback``, ``/fork`` and
   ``/forget``: a generated body names a random ``version`` or event id (schemathesis follows
   a link's ``requestBody`` only some of the time), and 404 ``unknown_version`` /
   ``unknown_events`` is then the contract (DESIGN §7), not a missing agent. The stateful
   phase applies that check from the creating operation, so there the hooks set a generated
   valid ``version`` of fork/rollback/predict to 0 (the new agent's head).
3. ``negative_data_rejection`` also counts 413 as a refusal: DESIGN §7 answers 413 to a batch
   over ``max_events_per_request`` (``too_many_events``) and to too many predict inputs.
4. ``tests/schemathesis_hooks.py`` fits generated cases to two cross-field rules
   (``input_scale`` has ``dim`` numbers; ``partial=true`` lists invalid events instead of
   refusing them, so negative event bodies go with ``partial=false``) and, for CI time, caps
   ``dim`` and ``lift_dim`` at 64 (the maxima are tested in ``test_faults_edges.py``).
5. Chat agents are left out of the document where the optional causal LM is not installed
   (the service then refuses them); the document says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.faults_helpers import BACKENDS, database, deployment

ROOT = Path(__file__).resolve().parents[1]
MAX_EXAMPLES = 15  # per operation and phase; the whole run stays well under a minute or two
ADMIN = "adm"
CONFIG = f"""
[checks]
max_response_time = 60

[checks.negative_data_rejection]  # (3) 413 is a refusal too
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

[[operations]]  # the admin key creates tenants
include-path = "/v1/tenants"
headers = {{ Authorization = "Bearer {ADMIN}" }}

[[operations]]  # (1) an input's validity depends on the agent
include-path-regex = "^/v1/agents/\\\\{{agent_id\\\\}}/(events|predict)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429]

[[operations]]  # (2) a random version or event id is rightly 404
include-path-regex = "^/v1/agents/\\\\{{agent_id\\\\}}/(predict|rollback|fork|forget)$"
checks.ensure_resource_availability.enabled = false

[phases.stateful.inference]  # follow the document's own links (and Location headers)
algorithms = ["location-headers"]
"""
SUMMARY = re.compile(r"(\d+) generated, (\d+) passed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_schemathesis_all_checks_all_phases(ray_cluster, tmp_path, backend):
    with database(backend, tmp_path) as url, deployment(
            url, http=True, admin_key=ADMIN, max_events_per_request=100, max_predict_inputs=20,
            max_input_chars=300, default_wait_ms=100, max_wait_ms=300) as dep:
        r = httpx.post(f"{dep.url}/v1/tenants", json={"name": "st"},
                       headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 201, r.text
        key = r.json()["api_key"]
        cfg = tmp_path / "schemathesis.toml"
        cfg.write_text(CONFIG)
        st = Path(sys.executable).with_name("st")
        cmd = [str(st), "--config-file", str(cfg), "run", f"{dep.url}/openapi.json",
               "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
               "--max-examples", str(MAX_EXAMPLES), "--seed", "15", "--request-timeout", "60",
               "--max-failures", "50", "-H", f"Authorization: Bearer {key}",
               "--output-truncate", "true"]
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
               "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=540)
        text = out.stdout + out.stderr
        found = SUMMARY.search(text)
        assert out.returncode == 0 and found, text[-20000:]
        generated, passed = map(int, found.groups())
        print(f"schemathesis on {backend}: {generated} cases generated, {passed} passed")
        assert generated == passed and generated > 500, text[-5000:]
        for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):  # each ran and passed
            assert re.search(rf"✅ {phase}", text), text[-5000:]
