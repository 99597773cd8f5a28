"""The explorer page in a real headless browser (Debian's chromium through chromium-driver),
against real worker and API processes on the session's Kafka and Redis: pick a table, run a
query, count the chart's series, watch live mode pick up a write, read a bad query's error,
see the pipeline panel; and the pipeline endpoint's JSON, the token flow and the query
preparation (time ranges) on their own.

The README's screenshot is taken by :func:`test_explorer_in_a_browser`: into the test's temp
dir, and into ``docs/explorer.png`` when ``INFLUENT_UPDATE_SCREENSHOT=1``.
"""
from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest

from influent.devstack import MissingPrerequisite
from tests.harness import ROOT, running, start_api, unique, wait_for, wait_for_count

STATIC = ROOT / "query_api" / "explorer" / "static"
HOSTS = 6


@pytest.fixture(scope="module")
def browser():
    from tests.browser import chromium

    try:
        with chromium() as session:
            yield session
    except MissingPrerequisite as exc:
        pytest.skip(f"no browser for the explorer tests: {exc}")


def by_id(browser, element_id: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def css(browser, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def runs(browser) -> int:
    """Queries the page has run (live runs included)."""
    return int(browser.execute_script("return document.body.dataset.runs || '0'"))


def manual_runs(browser) -> int:
    """Queries the user has run (Run button, Ctrl+Enter, picking a table)."""
    return int(browser.execute_script("return document.body.dataset.manualRuns || '0'"))


def run_query(browser, text: str, language: str = "influxql") -> None:
    """Type ``text`` into the editor, press Run and wait for that run to finish."""
    css(browser, f'input[name="language"][value="{language}"]')[0].click()
    editor = by_id(browser, "editor")
    editor.clear()
    editor.send_keys(text)
    before = manual_runs(browser)
    by_id(browser, "run").click()
    wait_for(lambda: manual_runs(browser) > before, timeout=30, what=f"query {text!r} to finish")


def series_names(browser) -> list[str]:
    """The chart's lines, read in one script (live mode redraws the chart under the test)."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#chart path.series')].map(p => p.dataset.series)")


def tsbs_lines(hosts: int, start_ns: int) -> bytes:
    from benchmarks.tsbs import generate_lines

    return "\n".join(generate_lines(hosts, 1.0, 7, start_ns)).encode()


def write(settings, db: str, body: bytes, token: str = "") -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = httpx.post(f"{settings.http_url}/api/v3/write_lp", params={"db": db}, content=body,
                      headers=headers, timeout=60)
    assert resp.status_code == 204, resp.text


@pytest.mark.integration
def test_explorer_in_a_browser(settings, browser, tmp_path):
    settings = settings.replace(plugin_dir=str(ROOT / "tests" / "plugins"), tick_interval=1.0)
    db = "bench"  # the namespace (topic prefix) is the test's own
    now_s = int(time.time())
    start_ns = (now_s - 3600) * 1_000_000_000
    with running(settings) as run:
        write(settings, db, tsbs_lines(HOSTS, start_ns))
        wait_for_count(settings, db, "cpu", HOSTS * 360, timeout=60)
        check_pipeline_counts(settings, db, messages=1, rows=HOSTS * 360)
        url = f"{settings.http_url}/explorer/"
        assert httpx.get(settings.http_url + "/", follow_redirects=False).headers["location"] == "/explorer/"

        browser.get(url)
        wait_for(lambda: db in [o.get_attribute("value") for o in css(browser, "#database option")],
                 what="the database in the picker")
        css(browser, f'#database option[value="{db}"]')[0].click()
        table_button = wait_for(lambda: css(browser, '#schema-tree .table-name[data-table="cpu"]'),
                                what="table cpu in the schema browser")[0]
        kinds = browser.execute_script(
            "return [...document.querySelectorAll('#schema-tree .kind')].map(e => e.textContent)")
        assert kinds.count("tag") == 10 and kinds.count("integer") == 10, kinds

        # pick a table: a starting query over the last hour, run at once, one line
        before = manual_runs(browser)
        table_button.click()
        wait_for(lambda: manual_runs(browser) > before, what="the table's starting query")
        assert "$timeFilter" in by_id(browser, "editor").get_attribute("value")
        assert "time >= now() - 1h" in by_id(browser, "sent").text
        assert len(series_names(browser)) == 1

        # the acceptance query: one line per host
        run_query(browser, "SELECT mean(usage_user) FROM cpu GROUP BY time(1m), hostname")
        assert not by_id(browser, "error").is_displayed()
        names = series_names(browser)
        assert sorted(names) == [f"hostname=host_{i}" for i in range(HOSTS)], names
        assert f"{HOSTS} series" in by_id(browser, "summary").text
        legend = browser.execute_script(
            "return [...document.querySelectorAll('#chart .legend-item')].map(e => e.textContent)")
        assert sorted(legend) == sorted(names)
        shot = tmp_path / "explorer.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("INFLUENT_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, ROOT / "docs" / "explorer.png")

        # the default range, "last hour with data": old data is shown from its newest hour
        old_ns = 1_700_000_000_000_000_000
        write(settings, db, "\n".join(f"old,host=h{i % 2} v={i} {old_ns + i * 60_000_000_000}"
                                      for i in range(90)).encode())
        wait_for_count(settings, db, "old", 90)
        run_query(browser, "SELECT mean(v) FROM old GROUP BY time(1m), host")
        assert sorted(series_names(browser)) == ["host=h0", "host=h1"]
        assert "no data in the last hour" in by_id(browser, "sent").text

        # SQL, and the table view, over all time ("as written")
        css(browser, '#range option[value=""]')[0].click()
        run_query(browser, "SELECT hostname, count(*) AS n FROM cpu GROUP BY hostname ORDER BY hostname",
                  language="sql")
        assert not by_id(browser, "error").is_displayed()
        assert by_id(browser, "tab-table").is_displayed()  # not chartable: the table is shown
        cells = [c.text for c in css(browser, "#result-table tbody td")]
        assert cells[:2] == ["host_0", "360"], cells

        # live mode: a point written after the query ran shows up as a new line
        css(browser, '#range option[value="1h"]')[0].click()
        run_query(browser, "SELECT mean(usage_user) FROM cpu GROUP BY time(1m), hostname")
        css(browser, '#live-interval option[value="1"]')[0].click()
        by_id(browser, "live").click()
        write(settings, db, b"cpu,hostname=late_host usage_user=42i")
        wait_for(lambda: "hostname=late_host" in series_names(browser), timeout=30,
                 what="live mode to draw the new host")
        assert len(series_names(browser)) == HOSTS + 1
        by_id(browser, "live").click()

        # a bad query: the API's message, not a blank page
        run_query(browser, "SELEC mean(usage_user) FROM cpu")
        error = by_id(browser, "error")
        assert error.is_displayed()
        assert "HTTP 400" in error.text and "found SELEC, expected SELECT" in error.text, error.text
        run_query(browser, "SELECT nope FROM missing_table_xyz", language="sql")
        assert "HTTP 400" in by_id(browser, "error").text

        # a bad line in the write box: the line and the reason
        css(browser, '.tabs [data-tab="write"]')[0].click()
        body = by_id(browser, "write-body")
        body.clear()
        body.send_keys("cpu,hostname=x usage_user=")
        by_id(browser, "write").click()
        result = wait_for(lambda: by_id(browser, "write-result").text, what="the write's answer")
        assert "HTTP 400" in result and "line 1" in result, result

        # the pipeline panel: partitions with what is buffered, and a failing trigger's error
        resp = httpx.post(f"{settings.http_url}/api/v3/configure/processing_engine_trigger", json={
            "db": db, "plugin_filename": "raises.py", "trigger_name": "explodes",
            "trigger_specification": "table:cpu", "disabled": False,
            "trigger_settings": {"run_async": False, "error_behavior": "log"}})
        assert resp.status_code == 200, resp.text
        resp = httpx.post(f"{settings.http_url}/api/v3/configure/subscription", json={
            "db": db, "name": "copy", "destination": {"kind": "kafka", "topic": unique("sub_")}})
        assert resp.status_code == 201, resp.text

        def trigger_failed() -> bool:
            write(settings, db, b"cpu,hostname=trigger_host usage_user=1i")
            return any(e["trigger"] == "explodes" for e in pipeline(settings)["errors"])

        wait_for(trigger_failed, timeout=60, interval=1.0, what="the trigger's error in the pipeline")
        css(browser, '.tabs [data-tab="pipeline"]')[0].click()
        wait_for(lambda: "boom from plugin" in by_id(browser, "pipeline").text, timeout=30,
                 what="the trigger's error in the panel")
        panel = by_id(browser, "pipeline").text
        assert "Partitions" in panel and "explodes" in panel and "copy" in panel, panel
        assert "no persist events yet" in panel

        # a clean stop persists every buffer: files, persist events, an empty worker group
        run.worker.stop()
        after = wait_for(lambda: (lambda p: p if p["persists"] else None)(pipeline(settings)),
                         timeout=30, what="persist events in the pipeline")
        assert after["group"]["state"] == "Empty" and after["group"]["members"] == 0
        assert {e["table"] for e in after["persists"]} == {"cpu", "old"}
        assert sum(x["buffered_rows"] for x in after["partitions"]) == 0
        assert sum(e["rows"] for e in after["persists"]) == sum(t["file_rows"] for t in after["tables"])
        used = [x for x in after["partitions"] if x["writes_end"]]
        assert used and all(x["files"] and x["last_persist"] for x in used), used
        wait_for(lambda: "Recent persists" in by_id(browser, "pipeline").text
                 and "no persist events yet" not in by_id(browser, "pipeline").text,
                 what="the persist events in the panel")


def pipeline(settings, token: str = "") -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = httpx.get(f"{settings.http_url}/api/v3/explorer/pipeline", headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def check_pipeline_counts(settings, db: str, messages: int, rows: int) -> None:
    """The pipeline endpoint: every write message counted, its position reported by ingest and
    its rows buffered, in the partition it was written to."""

    def settled() -> dict | None:
        p = pipeline(settings)
        parts = p["partitions"]
        done = (sum(x["writes_end"] or 0 for x in parts) == messages
                and all(x["writes_lag"] == 0 for x in parts)
                and sum(x["buffered_rows"] for x in parts) == rows)
        return p if done else None

    p = wait_for(settled, timeout=30, what="every write committed and buffered")
    assert [x["partition"] for x in p["partitions"]] == list(range(settings.partitions))
    assert p["group"] == {"id": settings.app_id, "state": "Stable", "members": 1}
    assert p["problems"] == []
    table = next(t for t in p["tables"] if t["db"] == db)
    assert table["buffered_rows"] == rows and table["buffered_bytes"] > 0 and table["files"] == 0
    for part in p["partitions"]:
        # ingest's reported position (none, or 0, for a partition never written to); a batch of
        # messages is buffered as one entry per table and partition key
        assert part["writes_committed"] in ((part["writes_end"],) if part["writes_end"] else (None, 0))
        assert (part["buffered_batches"] > 0) == (part["writes_end"] > 0)
        assert part["buffered_batches"] <= part["writes_end"]


@pytest.mark.integration
def test_page_is_public_data_needs_the_token(settings, browser):
    token = "explorer-secret"
    db = unique("tok_")
    api = start_api(settings.replace(token=token))
    try:
        for path in ("/explorer/", "/explorer/explorer.js", "/explorer/chart.js", "/explorer/explorer.css"):
            assert httpx.get(settings.http_url + path).status_code == 200, path
        assert httpx.get(settings.http_url + "/explorer/nope.js").status_code in (401, 404)
        assert httpx.get(settings.http_url + "/api/v3/explorer/pipeline").status_code == 401
        resp = httpx.post(f"{settings.http_url}/api/v3/configure/database", json={"db": db},
                          headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text

        browser.get(f"{settings.http_url}/explorer/")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        dialog = wait_for(lambda: by_id(browser, "token-dialog").is_displayed() and by_id(browser, "token-dialog"),
                          what="the token dialog")
        assert "unauthorized" in by_id(browser, "server-status").text
        by_id(browser, "token-input").send_keys(token)
        css(dialog, "button[type=submit]")[0].click()
        wait_for(lambda: db in [o.get_attribute("value") for o in css(browser, "#database option")],
                 what="databases listed with the token")
        browser.execute_script("sessionStorage.clear()")
    finally:
        api.stop()


CASES = [
    # (language, query, range, expected)
    ("influxql", "SELECT mean(v) FROM m GROUP BY time(1m), host", {"relative": "1h"},
     "SELECT mean(v) FROM m WHERE time >= now() - 1h GROUP BY time(1m), host"),
    ("influxql", "SELECT v FROM m WHERE host = 'a' OR host = 'b' LIMIT 5", {"relative": "15m"},
     "SELECT v FROM m WHERE time >= now() - 15m AND (host = 'a' OR host = 'b') LIMIT 5"),
    ("influxql", "SELECT v FROM m", {"relative": "7d"}, "SELECT v FROM m WHERE time >= now() - 7d"),
    ("influxql", "SELECT v FROM m WHERE $timeFilter GROUP BY time($interval)", {"relative": "1h"},
     "SELECT v FROM m WHERE time >= now() - 1h GROUP BY time(30s)"),
    ("influxql", "SELECT v FROM m WHERE note = 'group by limit'", {"relative": "5m"},
     "SELECT v FROM m WHERE time >= now() - 5m AND (note = 'group by limit')"),
    ("influxql", "SELECT max(v) FROM (SELECT v FROM m)", {"relative": "1h"},
     "SELECT max(v) FROM (SELECT v FROM m)"),
    ("influxql", "SHOW TAG KEYS", {"relative": "1h"}, "SHOW TAG KEYS"),
    ("influxql", "SELECT v FROM m;", None, "SELECT v FROM m"),
    ("sql", "SELECT * FROM m ORDER BY time DESC LIMIT 3", {"relative": "24h"},
     "SELECT * FROM m WHERE time >= now() - interval '24 hours' ORDER BY time DESC LIMIT 3"),
    ("sql", "SELECT date_bin($interval, time) AS t, avg(v) FROM m WHERE $timeFilter GROUP BY 1",
     {"from": 1_700_000_000_000, "to": 1_700_003_600_000},
     "SELECT date_bin(interval '30 seconds', time) AS t, avg(v) FROM m WHERE "
     "time >= '2023-11-14T22:13:20.000Z' AND time <= '2023-11-14T23:13:20.000Z' GROUP BY 1"),
]


def test_prepare_query_applies_the_time_range(browser):
    """The page's query preparation, run in the browser from the static file itself."""
    browser.get((STATIC / "index.html").as_uri())
    wait_for(lambda: browser.execute_script("return !!window.explorer"), what="the page script")
    for language, query, rng, expected in CASES:
        got = browser.execute_script("return explorer.prepareQuery(...arguments)",
                                     language, query, rng, 1_700_000_000_000)
        assert got == expected, (language, query, rng)
    assert browser.execute_script(
        """return explorer.tablesIn('SELECT * FROM "db"."autogen"."my table" WHERE a = \\'from x\\'')""") == ["my table"]
    assert browser.execute_script("return explorer.tablesIn('SELECT mean(v) FROM cpu GROUP BY time(1m)')") == ["cpu"]
    # the static files name no remote resource: the page works without internet access
    for path in STATIC.iterdir():
        assert "http://" not in path.read_text().replace("http://www.w3.org/2000/svg", ""), path
        assert "https://" not in path.read_text(), path
