"""``repro run`` records what it measured and survives a broken spec; ``repro page`` turns the records
into a site that works in a real browser (headless Chromium driven by Selenium).

One real run made here feeds every test: CACM BM25 (its Lucene index takes seconds), two other BM25
parameter settings on CACM naming it as their baseline (significance marks, Bonferroni over two
rows), and a spec whose model folder does not exist (an ERROR row).
"""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

MISSING_MODEL = """\
description: A spec whose model folder does not exist.
dataset: cacm
split: all
pipeline:
  searcher: impact
  params: {encoder: splade-tiny}
  hits: 1000
metrics:
  MAP:
    expected: 0.3
    tolerance: 0.01
    source: none
"""

BM25_VARIANT = """\
description: CACM, BM25 with k1={k1}, b={b}, against the tuned cacm-bm25.
dataset: cacm
split: all
pipeline:
  searcher: bm25
  params: {{k1: {k1}, b: {b}}}
  hits: 1000
baseline: cacm-bm25
metrics:
  MAP:
    expected: 0.30
    tolerance: 0.05
    source: a test condition
"""
VARIANTS = {"cacm-bm25-lucene-defaults": (1.2, 0.75), "cacm-bm25-short": (0.5, 0.3)}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, workdir):
    """``repro run`` of the four specs, results recorded in a folder of the test's own."""
    tmp = tmp_path_factory.mktemp("recorded")
    specs = tmp / "specs"
    specs.mkdir()
    (specs / "cacm-missing-model.yaml").write_text(MISSING_MODEL)
    for name, (k1, b) in VARIANTS.items():
        (specs / f"{name}.yaml").write_text(BM25_VARIANT.format(k1=k1, b=b))
    (tmp / "no-models").mkdir()
    results = tmp / "results"
    environment = {**os.environ, "PYSERINI_EXT_MODELS": str(tmp / "no-models")}
    out = subprocess.run([sys.executable, "-m", "pyserini_ext", "repro", "run", str(specs / "cacm-missing-model.yaml"),
                          "cacm-bm25", *(str(specs / f"{name}.yaml") for name in VARIANTS), "--quiet",
                          "--work", str(workdir), "--results", str(results)],
                         capture_output=True, text=True, timeout=900, env=environment)
    return tmp, results, out


def test_a_broken_spec_is_an_error_row_and_every_other_spec_still_runs(recorded):
    tmp, results, out = recorded
    assert out.returncode == 1, out.stderr
    table = out.stdout.splitlines()
    assert [line.split()[:2] for line in table[2:6]] == [
        ["cacm-missing-model", "-"], ["cacm-bm25", "MAP"], ["cacm-bm25-lucene-defaults", "MAP"],
        ["cacm-bm25-short", "MAP"]]
    assert table[2].split()[-1] == "ERROR"
    assert f"model path {tmp / 'no-models' / 'splade-tiny'} does not exist" in out.stdout
    assert "1 spec(s) could not run (ERROR)" in out.stdout

    records = {p.parent.name: json.loads(p.read_text()) for p in results.glob("*/*.json")}
    assert set(records) == {"cacm-missing-model", "cacm-bm25", *VARIANTS}
    error = records["cacm-missing-model"]
    assert error["error"].startswith("FileNotFoundError: model path") and error["rows"][0]["verdict"] == "ERROR"
    cacm = records["cacm-bm25"]
    assert [(r["metric"], r["expected"], r["tolerance"]) for r in cacm["rows"]] == [("MAP", 0.3123, 0.001)]
    assert cacm["rows"][0]["verdict"] in ("OK", "OK-within-tolerance")
    for record in records.values():
        assert {"spec", "spec_sha256", "commit", "date", "machine", "duration_s", "commands"} <= set(record)
    # Per-query scores of the 52 judged CACM topics, their mean the recorded measurement.
    average_precision = cacm["per_query"]["MAP"]
    assert len(average_precision) == 52
    assert sum(average_precision.values()) / 52 == pytest.approx(cacm["rows"][0]["measured"], abs=1e-12)


def test_the_table_marks_significance_against_the_baseline(recorded):
    from scipy import stats

    _, results, out = recorded
    records = {p.parent.name: json.loads(p.read_text()) for p in results.glob("*/*.json")}
    base = records["cacm-bm25"]["per_query"]["MAP"]
    qids = sorted(base)
    for name in VARIANTS:
        ours = records[name]["per_query"]["MAP"]
        reference = stats.ttest_rel([ours[q] for q in qids], [base[q] for q in qids])
        # Two rows compared with cacm-bm25: Bonferroni doubles p.
        expected = f"paired t = {reference.statistic:.3f}, p = {reference.pvalue:.3g}, " \
                   f"Bonferroni-corrected p = {min(1.0, 2 * reference.pvalue):.3g}"
        line = next(line for line in out.stdout.splitlines() if line.strip().startswith(f"{name} MAP"))
        assert expected in line, line


@pytest.fixture(scope="module")
def site(recorded):
    tmp, results, _ = recorded
    out = subprocess.run([sys.executable, "-m", "pyserini_ext", "repro", "page", "--out", str(tmp / "site"),
                          "--results", str(results)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return tmp / "site"


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"needs headless Chromium: {CHROMIUM} and {CHROMEDRIVER} are missing; "
                    f"install the Debian packages chromium and chromium-driver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="needs the Python package selenium (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(site):
    """The site over http://127.0.0.1 (a secure context, where the Clipboard API is allowed)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def severe(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_every_page_loads_without_console_errors_and_its_links_resolve(site, browser, served):
    pages = sorted(p.name for p in site.glob("*.html"))
    assert {"index.html", "cacm.html"} <= set(pages)
    for name in pages:
        browser.get(served + name)
        assert severe(browser) == [], name
        links = [a.get_attribute("href") for a in browser.find_elements("css selector", "a[href]")]
        assert links, name
        for link in links:
            target = urlparse(link)
            assert link.startswith(served), f"{name}: {link} leaves the site (the site is self-contained)"
            assert (site / target.path.lstrip("/")).is_file(), f"{name}: {link} does not resolve"
            if target.fragment:
                browser.get(link)
                assert browser.find_elements("id", target.fragment), f"{name}: no #{target.fragment} for {link}"
                browser.get(served + name)


def test_an_expander_shows_the_commands_and_the_copy_button_copies_them(site, browser, served, recorded):
    tmp = recorded[0]
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": served.rstrip("/"),
                                                         "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    browser.get(served + "cacm.html")
    row = browser.find_element("id", "cacm-bm25")
    cells = row.find_elements("css selector", "td.num")
    measured = json.loads(next((recorded[1] / "cacm-bm25").glob("*.json")).read_text())["rows"][0]["measured"]
    assert [c.text for c in cells] == [f"{measured:.4f}"]
    assert cells[0].get_attribute("class").split()[1] in ("ok", "within")
    assert "expected 0.3123" in cells[0].get_attribute("title")
    button = row.find_element("css selector", "button.expander")
    details = browser.find_element("id", button.get_attribute("aria-controls"))
    assert not details.is_displayed()
    button.click()
    assert details.is_displayed() and button.get_attribute("aria-expanded") == "true"
    commands = details.find_element("css selector", "pre.commands")
    assert commands.text.splitlines()[0].startswith("pyserini-ext index bm25 --dataset cacm")
    assert "Anserini's CACM regression" in details.text  # the source of the expected value
    assert "Measured 20" in details.text  # when (and on what machine) it was measured

    details.find_element("css selector", "button.copy").click()
    status = details.find_element("css selector", ".copy-status")
    deadline = time.time() + 10
    while not status.text and time.time() < deadline:
        time.sleep(0.1)
    if status.text == "copied":  # the Clipboard API (or execCommand) reported success: read it back
        clipboard = browser.execute_async_script(
            "const done = arguments[0]; navigator.clipboard.readText().then(done, e => done('ERROR ' + e));")
        assert clipboard == commands.get_attribute("textContent")
    else:  # the page's fallback: the commands are selected for Ctrl+C
        assert status.text == "selected: press Ctrl+C to copy"
        assert browser.execute_script("return window.getSelection().toString()") == commands.get_attribute("textContent")
    assert severe(browser) == []

    # The baseline comparison is on the page, as marks and as the test's numbers.
    browser.get(served + "cacm.html")
    row = browser.find_element("id", "cacm-bm25-lucene-defaults")
    assert "baseline: cacm-bm25" in row.text
    assert "paired t =" in row.find_elements("css selector", "td.num")[0].get_attribute("title")
    browser.get(served + "index.html")
    counts = browser.find_element("id", "verdict-counts").text
    assert "ERROR" in counts
    browser.get(served + "cacm.html")
    shot = tmp / "cacm.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_spec_changed_since_its_last_run_is_stale(recorded):
    from pyserini_ext.repro.pages import collect

    tmp, results, _ = recorded
    spec = tmp / "specs" / "cacm-bm25-short.yaml"
    original = spec.read_text()
    try:
        spec.write_text(original.replace("hits: 1000", "hits: 100"))
        rows = {row.name: row for page in collect(results)[0] for row in page.rows}
        assert rows["cacm-bm25-short"].stale
        assert not rows["cacm-bm25"].stale and not rows["cacm-bm25-lucene-defaults"].stale
    finally:
        spec.write_text(original)
