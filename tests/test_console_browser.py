"""The web console in a real browser: the system's headless Chromium driven by Playwright,
against a real running service (Ray, SQLite, uvicorn). Screenshots go to reports/console/.

Skips only where no Chromium can be found (CI installs it: .ci/run).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_fixtures import auth, vec_events, wait_applied

SHOTS = Path(__file__).resolve().parent.parent / "reports" / "console"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_ROWS, WINDOW, BUCKETS, EVENT_ROWS = 50, 1000, 200, 50  # as in workers/http/console/console.js


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, url: str, key: str, hash_: str = "") -> None:
    page.goto(f"{url}/console{hash_}")
    page.fill("#key", key)
    page.click("#key-save")


def table_versions(page: Any) -> list[int]:
    return [int(v) for v in page.eval_on_selector_all(
        "#versions tbody tr", "rows => rows.map(r => r.dataset.version)")]


def wait_plot(page: Any, head: int) -> None:
    """Wait until the plot shows the agent at ``head`` (the plot loads beside the table)."""
    page.wait_for_selector(f"#plot-caption:has-text('of 0–{head}')")


def plot_points(page: Any) -> int:
    pts = page.get_attribute("#plot polyline.series", "points") or ""
    return len(pts.split())


def confirm(page: Any, ok: bool) -> str:
    """Answer the page's confirmation dialog; returns its question."""
    page.wait_for_selector("#confirm[open]")
    text = page.inner_text("#confirm-text")
    page.click("#confirm-ok" if ok else "#confirm-cancel")
    page.wait_for_selector("#confirm", state="hidden")
    return text


def test_console_files_hold_no_data_and_need_no_key(api, raw):
    r = raw.get("/console")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for name in ("console.js", "plot.js", "console.css"):
        assert raw.get(f"/console/{name}").status_code == 200
    bad = raw.get("/console/__init__.py")
    assert bad.status_code == 404 and bad.json()["error"]["field"] == "name"
    assert raw.get("/console/..%2Fapp.py").status_code == 404
    assert raw.get("/v1/agents").status_code == 401  # the data stays behind the key


def test_console_wrong_key_asks_again(api, page):
    sign_in(page, api.url, "not-a-key")
    page.wait_for_selector("#message.error")
    assert "refused" in page.inner_text("#message")
    assert page.is_visible("#key-form") and not page.is_visible("#agents-view")
    assert page.evaluate("sessionStorage.getItem('deltamem.key')") is None


def test_console_lists_only_the_keys_agents_as_text(api, tenant_a, tenant_b, page):
    mine = tenant_b.create_agent("<img src=x onerror=document.title='pwned'>", kind="classifier",
                                 encoder="none", dim=4)
    theirs = tenant_a.create_agent("tenant-a-only", kind="classifier", encoder="none", dim=4)
    sign_in(page, api.url, tenant_b.api_key)
    page.wait_for_selector(f"#agents a[href='#/agents/{mine.id}']")
    assert mine.name in page.inner_text("#agents")  # shown as text, not markup
    assert page.locator("#agents img").count() == 0 and page.title() == "deltamem console"
    assert theirs.id not in page.content() and "tenant-a-only" not in page.inner_text("#agents")
    page.goto(f"{api.url}/console#/agents/{theirs.id}")  # another tenant's agent: 404
    page.wait_for_selector("#message.error")
    assert "404" in page.inner_text("#message") and not page.is_visible("#agent-view")


def _reference_downsample(points: list[dict[str, float]], buckets: int) -> list[dict[str, float]]:
    """Obviously correct min/max buckets: for each bucket, scan its members for the first
    lowest and first highest y."""
    if len(points) <= 2 * buckets:
        return list(points)
    x0, x1 = points[0]["x"], points[-1]["x"]
    width = (x1 - x0) / buckets or 1
    out: list[dict[str, float]] = []
    for k in range(buckets):
        members = [p for p in points if min(buckets - 1, int((p["x"] - x0) // width)) == k]
        if not members:
            continue
        lo = min(members, key=lambda p: p["y"])
        hi = max(members, key=lambda p: p["y"])
        out.extend([lo] if lo is hi else sorted([lo, hi], key=lambda p: p["x"]))
    return out


def test_plot_downsample_matches_reference(api, page):
    page.goto(f"{api.url}/console")
    page.wait_for_function("() => window.DeltamemPlot !== undefined")
    rng = random.Random(7)
    for trial in range(40):
        n = rng.choice([1, 5, 50, 399, 401, 1000, 3000])
        buckets = rng.choice([1, 3, 50, 200])
        xs = sorted(rng.sample(range(20_000), n))
        ys = [rng.choice([rng.random(), float(rng.randint(0, 3))]) for _ in xs]
        pts = [{"x": x, "y": y} for x, y in zip(xs, ys, strict=True)]
        got = page.evaluate("([p, b]) => window.DeltamemPlot.downsample(p, b)", [pts, buckets])
        assert got == _reference_downsample(pts, buckets), (trial, n, buckets)
        assert len(got) <= max(n if n <= 2 * buckets else 0, 2 * buckets)


def _stream(client, agent_id: str, batches: int, size: int, prefix: str) -> None:
    done = client.get_agent(agent_id).events_applied
    for b in range(batches):
        client.ingest(agent_id, vec_events(size, prefix=prefix, start=b * size))
        done += size
        wait_applied(client, agent_id, done)


def expected_points(raw: httpx.Client, key: dict[str, str], agent_id: str) -> int:
    """The points the plot shows below the bucket bound: one per version with a windowed
    accuracy (GET /quality), else one per version with a running accuracy, else one per
    version (events per version)."""
    q = raw.get(f"/v1/agents/{agent_id}/quality?limit={WINDOW}", headers=key)
    assert q.status_code == 200, q.text
    with_acc = [p for p in q.json()["points"] if p["accuracy"] is not None]
    if with_acc:
        return len(with_acc)
    vs = raw.get(f"/v1/agents/{agent_id}/versions?limit={WINDOW}", headers=key).json()["versions"]
    with_acc = [v for v in vs if v.get("accuracy") is not None]
    return len(with_acc) or len(vs)


def test_console_create_stream_and_roll_back(api, tenant_a, raw, page):
    sign_in(page, api.url, tenant_a.api_key)
    page.wait_for_selector("#agents-view:not([hidden])")
    name = f"console-{int(time.time() * 1000) % 10**8}"
    page.fill("#new-name", name)
    page.select_option("#new-encoder", "none")
    page.fill("#new-dim", "4")
    page.click("#create")
    page.wait_for_selector(f"#agent-title:has-text('{name}')")
    agent_id = re.search(r"#/agents/(.+)$", page.url).group(1)  # type: ignore[union-attr]
    assert tenant_a.get_agent(agent_id).name == name
    shot(page, "01-created")

    _stream(tenant_a, agent_id, batches=6, size=10, prefix="c")
    tenant_a.forget(agent_id, ["c55"])  # from the last batch: version 2 stays restorable
    tenant_a.fork(agent_id, f"{name}-fork")
    head = tenant_a.get_agent(agent_id).head_version
    page.click("#refresh")
    page.wait_for_selector(f"#versions tbody tr[data-version='{head}']")
    wait_plot(page, head)
    listed = table_versions(page)
    assert listed == list(range(head, max(-1, head - PAGE_ROWS), -1))
    assert plot_points(page) == expected_points(raw, auth(tenant_a), agent_id)
    assert page.locator("#plot .marker-forget").count() == 1
    assert page.locator("#plot .marker-fork").count() == 1
    shot(page, "02-timeline")

    page.check("input[aria-label='select version 2']")
    page.click("#rollback")
    assert "version 2" in confirm(page, ok=False)
    page.wait_for_selector("#message:has-text('Cancelled')")
    assert tenant_a.get_agent(agent_id).head_version == head  # cancel changes nothing

    page.check("input[aria-label='select version 2']")
    page.click("#rollback")
    confirm(page, ok=True)
    page.wait_for_selector(f"#versions tbody tr[data-version='{head + 1}']")
    wait_plot(page, head + 1)
    assert "state of version 2" in page.inner_text("#message")
    top = tenant_a.versions(agent_id, limit=1).versions[0]
    assert (top.version, top.kind) == (head + 1, "rollback")
    assert table_versions(page)[0] == head + 1
    assert page.locator("#plot .marker-rollback").count() == 1
    shot(page, "03-rolled-back")


def test_console_guard_rollback_then_manual_rollback(api, tenant_a, raw, page):
    key = auth(tenant_a)
    body = {"name": "guarded", "kind": "classifier", "encoder": "none", "dim": 4,
            "guard": {"window": 100, "drop": 0.1, "action": "rollback"}}
    r = raw.post("/v1/agents", json=body, headers=key)
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    _stream(tenant_a, agent_id, batches=6, size=100, prefix="g")
    rng = random.Random(3)
    burst = vec_events(300, prefix="g", start=600)
    for ev in burst:  # label-flip burst: 20% of the labels permuted (L_k -> L_k+1)
        if rng.random() < 0.2:
            ev["target"] = f"L{(int(ev['target'][1:]) + 1) % 4}"
    for s in range(0, 300, 20):
        tenant_a.ingest(agent_id, burst[s:s + 20])
    deadline = time.monotonic() + 120
    while True:
        guard = raw.get(f"/v1/agents/{agent_id}/guard", headers=key).json()
        a = raw.get(f"/v1/agents/{agent_id}", headers=key).json()
        if guard["quarantined"] and (a["events_held"] > 0 or a["events_applied"] == 900):
            break
        assert time.monotonic() < deadline, f"the guard did not act: {guard}"
        time.sleep(0.2)
    assert [g["action"] for g in guard["actions"]] == ["rollback"]

    head = tenant_a.get_agent(agent_id).head_version
    sign_in(page, api.url, tenant_a.api_key, f"#/agents/{agent_id}")
    wait_plot(page, head)
    page.wait_for_selector("#guard-actions tbody tr")
    assert "rollback" in page.inner_text("#guard-actions")
    assert "QUARANTINED" in page.inner_text("#guard-summary")
    assert page.locator("#plot .marker-guard").count() == 1
    assert "prequential accuracy" in page.inner_text("#plot-caption")
    held = raw.get(f"/v1/agents/{agent_id}", headers=key).json()["events_held"]
    if held:
        page.wait_for_selector("#held tbody input[type=checkbox]")
    assert page.locator("#held tbody input[type=checkbox]").count() == min(held, EVENT_ROWS)
    shot(page, "04-guard-rolled-back")

    if held > EVENT_ROWS:  # the next page of held events
        page.click("#held-more")
        page.wait_for_function("n => document.querySelectorAll('#held tbody tr').length == n",
                               arg=min(held, 2 * EVENT_ROWS))
    first = page.get_attribute("#held tbody input[type=checkbox]", "value")
    page.check(f"#held tbody input[value='{first}']")
    page.click("#forget-selected")
    assert "Forget 1 held event" in confirm(page, ok=True)
    page.wait_for_selector("#message:has-text('Forgot 1 event')")
    page.wait_for_selector(f"#held tbody input[value='{first}']", state="detached")
    assert page.locator("#held tbody input[type=checkbox]").count() == min(held - 1, EVENT_ROWS)
    page.click("#release-all")
    assert "Release all held events" in confirm(page, ok=True)
    page.wait_for_selector("#message:has-text('Released')")
    wait_applied(tenant_a, agent_id, 899)
    head = tenant_a.get_agent(agent_id).head_version
    page.click("#refresh")
    wait_plot(page, head)
    page.check("input[aria-label='select version 1']")
    page.click("#rollback")
    confirm(page, ok=True)
    page.wait_for_selector(f"#versions tbody tr[data-version='{head + 1}']")
    top = raw.get(f"/v1/agents/{agent_id}/versions?limit=1", headers=key).json()["versions"][0]
    assert (top["version"], top["kind"], top["state_of"]) == (head + 1, "rollback", 1)
    shot(page, "05-guard-then-manual-rollback")


def _big_history(api, admin, n: int) -> tuple[str, str]:
    """A new tenant and an agent with ``n`` committed versions (deltas, with a snapshot every
    2500 and a rollback every 1000), built through the repository; returns (key, agent id)."""
    from agent.config import AgentConfig
    from agent.model import MemoryAgent
    from storage.engine import Database
    from storage.repository import unit_of_work

    tenant = admin.create_tenant("console-big")
    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 4,
                                 "memory": {"rule": "delta"}})
    learner = MemoryAgent(cfg)
    sums = [learner.checksum()]
    evs = vec_events(3 * n, prefix="big")
    db = Database(api.settings.database_url)
    try:
        with unit_of_work(db) as repo:
            agent_id = repo.create_agent(tenant.id, "big", cfg.to_dict(), *learner.state,
                                         sums[0]).id
        for lo in range(1, n + 1, 500):  # one transaction per 500 versions
            his = range(lo, min(n, lo + 499) + 1)
            sizes = {v: 1 + v % 3 for v in his if v % 1000 and v % 2500 != 1}
            with unit_of_work(db) as repo:  # received as one batch, applied in micro-batches
                sent = evs[:sum(sizes.values())]
                del evs[:len(sent)]
                accepted, _ = repo.append_events(agent_id, sent)
                todo = list(zip(sent, accepted, strict=True))
                for v in his:
                    if v % 1000 == 0:
                        repo.commit_version(agent_id, v - 1, "rollback", state_of=v - 500,
                                            checksum=sums[v - 500])
                        learner.load_state(*repo.load_state(agent_id, v - 500))
                    elif v % 2500 == 1:
                        repo.commit_version(agent_id, v - 1, "snapshot", snapshot=learner.state,
                                            checksum=sums[-1])
                    else:
                        batch, todo = todo[:sizes[v]], todo[sizes[v]:]
                        delta = learner.learn_many([e["input"] for e, _ in batch],
                                                   [e["target"] for e, _ in batch])
                        repo.commit_version(agent_id, v - 1, "delta", delta=delta,
                                            event_seqs=[a.seq for _, a in batch],
                                            checksum=learner.checksum())
                    sums.append(learner.checksum())
    finally:
        db.dispose()
    return tenant.api_key, agent_id


def test_console_stays_bounded_at_10000_versions(api, admin, page):
    n = 10_000
    key, agent_id = _big_history(api, admin, n)
    sizes: list[int] = []  # the `limit` of every versions/quality request the page sends
    page.on("request", lambda r: sizes.extend(
        int(x) for x in re.findall(r"[?&]limit=(\d+)", r.url) if "/v1/" in r.url))
    sign_in(page, api.url, key, f"#/agents/{agent_id}")
    page.wait_for_selector(f"#versions tbody tr[data-version='{n}']")
    wait_plot(page, n)
    assert table_versions(page) == list(range(n, n - PAGE_ROWS, -1))
    assert 0 < plot_points(page) <= 2 * BUCKETS
    assert page.locator("#plot .marker").count() <= 3 * BUCKETS
    assert page.locator("#plot .marker-rollback").count() == 1  # v10000 in the last 1000
    assert max(sizes) <= WINDOW
    shot(page, "06-10000-versions")

    page.click("#versions-older")
    page.wait_for_selector(f"#versions tbody tr[data-version='{n - PAGE_ROWS}']")
    assert table_versions(page) == list(range(n - PAGE_ROWS, n - 2 * PAGE_ROWS, -1))
    page.click("#plot-older")
    page.wait_for_selector("#plot-caption:has-text('versions 8001–9000')")
    assert page.locator("#plot .marker-rollback").count() == 1  # v9000
    assert 0 < plot_points(page) <= 2 * BUCKETS
    assert max(sizes) <= WINDOW
    shot(page, "07-10000-versions-older")
