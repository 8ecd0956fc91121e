"""The summary page's figures and tables beyond the Pareto plot: the k' curves (from
``benchmarks/results/multivector.json``), the QPP correlation table (from ``<work>/qpp/*.json``,
which ``pyserini-ext qpp`` records) and the training curves (from ``<work>/models/*/training.json``),
each drawn from a small record the test writes, each saying when and on what machine it was measured.
"""

import base64
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lxml import html

from test_pages import browser, severe  # noqa: F401  (the headless Chromium fixture; skips without it)

PLUGIN_DATA = Path(__file__).resolve().parent / "plugin_pkg" / "px_hashing" / "data"
MULTIVECTOR = {
    "benchmark": "multivector", "dataset": "beir/scifact test", "queries": 3, "encoder": "colbert-minilm-l6-v2",
    "date": "2026-01-02T03:04:05+00:00", "machine": "testhost (x86_64, 2 CPUs, Linux)", "commit": "abc",
    "command": "python benchmarks/multivector.py --queries 3",
    "rows": [{"scoring": "ColBERT", "k_prime": 10, "nDCG@10": 0.6688, "candidates_per_query": 106},
             {"scoring": "XTR (min)", "k_prime": 10, "nDCG@10": 0.4695},
             {"scoring": "ColBERT", "k_prime": 100, "nDCG@10": 0.6676, "candidates_per_query": 886},
             {"scoring": "XTR (min)", "k_prime": 100, "nDCG@10": 0.5435}],
}
TRAINING = {"config": {"name": "tiny-run", "student": "all-minilm-l6-v2", "loss": {"name": "margin_mse"}},
            "steps": 4, "lists": 8, "losses": [2.0, 1.5, 1.25, 1.0], "seconds_this_session": 1.0, "torch": "2"}


def summary(index: Path):
    """``{title: (caption, png bytes)}`` of the figures, and the parsed page."""
    page = html.fromstring(index.read_text())
    figures = {}
    for figure in page.xpath("//figure"):
        src = figure.xpath(".//img")[0].get("src")
        assert src.startswith("data:image/png;base64,")
        caption = figure.xpath(".//figcaption")[0].text_content()
        title = figure.xpath(".//figcaption/strong")[0].text_content().rstrip(".")
        figures[title] = (caption, base64.b64decode(src.split(",", 1)[1]))
    return figures, page


def table_rows(table) -> list[list[str]]:
    return [[cell.text_content() for cell in row.xpath("./th|./td")] for row in table.xpath(".//tr")]


@pytest.fixture(scope="module")
def recorded_site(tmp_path_factory):
    """A work folder with a QPP record and a trained model's record, a benchmark folder with a
    multivector.json, and the site written from them."""
    from pyserini_ext.eval.qpp import correlation_table, write_qpp_record
    from pyserini_ext.repro.pages import write_site

    tmp = tmp_path_factory.mktemp("figures")
    benchmarks, work = tmp / "benchmarks", tmp / "work"
    benchmarks.mkdir()
    (benchmarks / "multivector.json").write_text(json.dumps(MULTIVECTOR))
    (work / "models" / "tiny-run").mkdir(parents=True)
    (work / "models" / "tiny-run" / "training.json").write_text(json.dumps(TRAINING))
    # Predictor P against y = (4, 3, 1, 2): Spearman -0.8, Pearson -0.8, Kendall tau -4/6;
    # a constant predictor has no correlation (n/a).
    qids = ["a", "b", "c", "d"]
    rows = correlation_table({"P": dict(zip(qids, [1, 2, 3, 4])), "C": dict.fromkeys(qids, 5.0)},
                             {"tiny-bm25": dict(zip(qids, [4, 3, 1, 2]))})
    record = write_qpp_record(work / "qpp" / "tiny.test.json", "tiny test: correlation with nDCG@10", rows,
                              dataset="tiny", split="test", metric="nDCG@10", command="pyserini-ext qpp --dataset tiny")
    index = write_site(tmp / "site", work / "results", specs=[], benchmarks=benchmarks, figures_dir=tmp / "none")
    return tmp, index, json.loads(record.read_text())


def test_the_qpp_record_keeps_every_correlation_and_when_and_where(recorded_site):
    _, _, record = recorded_site
    assert record["rows"] == [
        {"predictor": "P", "reference": "tiny-bm25", "spearman": pytest.approx(-0.8), "pearson": pytest.approx(-0.8),
         "kendall": pytest.approx(-4 / 6)},
        {"predictor": "C", "reference": "tiny-bm25", "spearman": None, "pearson": None, "kendall": None}]
    assert {"date", "machine", "commit", "command", "dataset", "split", "metric"} <= set(record)


def test_the_summary_page_shows_the_k_prime_curves_the_training_curve_and_the_qpp_table(recorded_site):
    _, index, record = recorded_site
    figures, page = summary(index)
    assert set(figures) == {"nDCG@10 against k' (multivector)", "Training loss: tiny-run"}
    for _, png in figures.values():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000

    caption = figures["nDCG@10 against k' (multivector)"][0]
    assert "From multivector.json (beir/scifact test, colbert-minilm-l6-v2): ColBERT, XTR (min) at k' = 10, 100" in caption
    assert "measured 2026-01-02T03:04:05+00:00 on testhost (x86_64, 2 CPUs, Linux) by " \
           "`python benchmarks/multivector.py --queries 3`" in caption

    caption = figures["Training loss: tiny-run"][0]
    assert "From tiny-run/training.json: margin_mse loss over 4 steps, student all-minilm-l6-v2" in caption
    assert "the record gives no date and no machine (file written 20" in caption

    [table] = page.xpath("//table[@class='qpp']")
    assert table.xpath("./caption")[0].text_content() == "reference run: tiny-bm25"
    assert table_rows(table) == [["predictor", "spearman", "pearson", "kendall"],
                                 ["P", "-0.800", "-0.800", "-0.667"],
                                 ["C", "n/a", "n/a", "n/a"]]
    meta = table.getprevious().text_content()
    assert meta.startswith("tiny test: correlation with nDCG@10. From qpp/tiny.test.json: ")
    assert f"measured {record['date']} on {record['machine']} by `pyserini-ext qpp --dataset tiny`" in meta


def test_without_records_the_page_says_what_would_make_them(tmp_path):
    from pyserini_ext.repro.pages import write_site

    index = write_site(tmp_path / "site", tmp_path / "work" / "results", specs=[], benchmarks=tmp_path / "none",
                       figures_dir=tmp_path / "none")
    figures, page = summary(index)
    assert figures == {} and page.xpath("//table[@class='qpp']") == []
    assert "No QPP study recorded in this work folder" in page.text_content()


def test_the_qpp_command_records_the_table_it_prints_and_the_page_shows_it(tmp_path):
    """``pyserini-ext qpp`` on a 40-document corpus with a BM25 reference spec, then ``repro page``:
    the page's table is the one the command printed."""
    data = tmp_path / "tiny"
    shutil.copytree(PLUGIN_DATA, data)
    spec = tmp_path / "tiny-bm25.yaml"
    spec.write_text(f"description: BM25 on the tiny corpus.\ndataset: {data}\nsplit: test\n"
                    "pipeline:\n  searcher: bm25\n  params: {k1: 0.9, b: 0.4}\n  hits: 100\n"
                    "metrics:\n  nDCG@10:\n    expected: 0.5\n    tolerance: 0.5\n    source: none\n")
    work = tmp_path / "work"
    out = subprocess.run([sys.executable, "-m", "pyserini_ext", "qpp", "--dataset", str(data), "--split", "test",
                          "--reference", str(spec), "--work", str(work), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    [record] = (work / "qpp").glob("*.json")
    assert record.name.endswith(".test.json")
    assert out.stdout.splitlines()[-1] == f"recorded {record} (shown by `pyserini-ext repro page`)"
    printed = [line.split() for line in out.stdout.splitlines()
               if line.split() and line.split()[0][:3] in ("SCQ", "VAR", "IDF", "PMI")]
    assert len(printed) == 16

    site = subprocess.run([sys.executable, "-m", "pyserini_ext", "repro", "page", "--out", str(tmp_path / "site"),
                           "--results", str(work / "results")], capture_output=True, text=True, timeout=300)
    assert site.returncode == 0, site.stderr
    _, page = summary(tmp_path / "site" / "index.html")
    [table] = page.xpath("//table[@class='qpp']")
    assert table_rows(table)[1:] == printed
    assert table.xpath("./caption")[0].text_content() == "reference run: tiny-bm25"
    recorded = json.loads(record.read_text())
    assert recorded["command"] == f"pyserini-ext qpp --dataset {data} --split test --reference {spec} --metric nDCG@10"
    assert f"on {recorded['machine']} by `{recorded['command']}`" in table.getprevious().text_content()


def test_the_summary_page_with_every_figure_loads_in_chromium(recorded_site, browser):  # noqa: F811
    tmp, index, _ = recorded_site
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(index.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert severe(browser) == []
        images = browser.find_elements("css selector", "figure img")
        assert len(images) == 2
        for image in images:  # decoded and drawn: a broken data URI has no natural width
            assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100
        table = browser.find_element("css selector", "table.qpp")
        assert table.is_displayed() and "-0.667" in table.text
        shot = tmp / "summary.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        server.shutdown()
