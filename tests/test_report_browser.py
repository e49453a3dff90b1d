"""The report of a real tiny run, opened in headless chromium (Debian's `chromium` package).

Snakemake's report is a single-page app: nothing but the landing page is in the DOM until a
reader clicks. The test clicks through it like a reader, with real mouse events (tests/browser.py
drives chromium over its DevTools pipe): every category from the menu, every subcategory, and
the eye button of every item. Each plot must then be shown as a decoded image of non-zero
size, the written summary must render its words in the frame the app opens, and each table's
button must hand out the table itself. No chromium: skipped on a laptop, a failure on CI.
"""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from browser import Chromium, find_chromium
from conftest import need

pytestmark = pytest.mark.slow

CATEGORIES = ["1. Summary", "2. Per model", "3. Statistics", "4. Final model"]
# Items each category must hold (file names); the test also views whatever else it finds.
EXPECTED = {
    "1. Summary": {"summary.html", "cv_summary.tsv", "selected.tsv", "parallel_coordinates.svg",
                   "prepare_report.json"},
    "2. Per model": {"heatmap_model_a.svg", "confusion.svg", "per_class_accuracy.tsv",
                     "learning_curves.svg", "errors.png"},
    "3. Statistics": {"compare_to_best.tsv", "resolution.tsv", "compare_models.tsv", "factor_effects.tsv",
                      "repeat_noise.tsv", "factor_effects.svg", "fold_accuracies.svg"},
    "4. Final model": {"final_model.html"},
}
# Tables with at least one row in a one-model run (comparisons of models and repeats are empty).
WITH_ROWS = {"cv_summary.tsv", "selected.tsv", "per_class_accuracy.tsv", "compare_to_best.tsv",
             "resolution.tsv", "factor_effects.tsv"}
# What a reader must see: the verdicts, the resolution, the corrected winner.
SUMMARY_WORDS = ["Best configurations", "corrected for that choice", "Against each model's best",
                 "What these folds can resolve", "model_a"]


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    need(binary is not None, "chromium is not installed (apt-get install chromium) or $CHROMIUM is not an executable")
    return binary


@pytest.fixture(scope="module")
def tiny_report(chromium, tiny_run):
    """The report of the shared whole run (conftest.tiny_run)."""
    return tiny_run.work / "report.html"


def link(text: str, within: str = "#app") -> str:
    """JavaScript: the first link under `within` whose text is exactly `text`."""
    return f"[...document.querySelectorAll({within + ' a'!r})].find(a => a.textContent.trim() === {json.dumps(text)})"


def item_row(path: str) -> str:
    """JavaScript: the row of the results table whose label cells show the labels of `path`."""
    return f"""(() => {{
        const labels = results[{json.dumps(path)}].labels || {{}};
        const heads = [...document.querySelectorAll('#app table thead th')].map(th => th.textContent.trim());
        return [...document.querySelectorAll('#app table tbody tr')].find(tr => {{
            const cells = [...tr.querySelectorAll('td')].slice(0, -1).map(td => td.textContent.trim());
            return cells.length > 0 && cells.every((text, i) => (labels[heads[i]] ?? {json.dumps(path)}) === text);
        }});
    }})()"""


def eye_button(path: str) -> str:
    return f"{item_row(path)}.querySelector('td:last-child a[iconname=eye]')"


def show_category(browser: Chromium, category: str, subcategory: str, several: bool) -> None:
    """From anywhere: breadcrumb 'Results' (or the home page's menu), the category, the subcategory."""
    if browser.js(f"!!({link('Results', 'nav')})"):
        browser.click(link("Results", "nav"))
    browser.click(link(category))
    if several:
        browser.click(link(subcategory))
    browser.wait_for("document.querySelector('#app table tbody tr')", what=f"the items of {category}")


def check_image(browser: Chromium, path: str, name: str) -> None:
    browser.click(eye_button(path))
    shown = f"[...document.querySelectorAll('#app img')].find(img => img.getAttribute('src') === results[{json.dumps(path)}].data_uri)"
    browser.wait_for(shown, what=f"{name} shown")
    size = browser.js(f"""(async () => {{
        const img = {shown};
        await img.decode();  // throws if the image data cannot be decoded
        const r = img.getBoundingClientRect();
        return {{natural: [img.naturalWidth, img.naturalHeight], shown: [r.width, r.height],
                 visible: getComputedStyle(img).visibility === 'visible' && getComputedStyle(img).display !== 'none'}};
    }})()""")
    assert min(size["natural"]) > 0 and min(size["shown"]) > 0 and size["visible"], (name, size)


def check_html(browser: Chromium, path: str, name: str) -> str:
    browser.click(eye_button(path))
    frame = f"[...document.querySelectorAll('#app iframe')].find(f => f.getAttribute('src') === results[{json.dumps(path)}].data_uri)"
    browser.wait_for(frame, what=f"{name} in a frame")
    box = browser.js(f"(() => {{ const r = ({frame}).getBoundingClientRect(); return [r.width, r.height]; }})()")
    assert min(box) > 0, (name, box)
    uri = browser.js(f"results[{json.dumps(path)}].data_uri")
    context = browser.frame_context(uri)
    text = browser.wait_for("document.readyState === 'complete' && document.body && document.body.innerText",
                            what=f"the text of {name}", context=context)
    height = browser.js("document.documentElement.scrollHeight", context=context)
    assert height > 0, name
    return text


def check_table(browser: Chromium, path: str, name: str) -> None:
    """A TSV is not drawn by the app: its eye button is a download link that must hold the table."""
    href = browser.js(f"{eye_button(path)}.getAttribute('href')")
    assert browser.js(f"{eye_button(path)}.getAttribute('download')") == name
    box = browser.box(eye_button(path))
    assert box["width"] > 0 and box["height"] > 0 and box["hit"], (name, box)
    table = base64.b64decode(href.split("base64,", 1)[1]).decode()
    lines = table.strip("\n").split("\n")
    assert "\t" in lines[0], (name, table[:300])
    assert len(lines) >= 2 or name not in WITH_ROWS, (name, table[:300])
    assert {line.count("\t") for line in lines} == {lines[0].count("\t")}, f"{name} is ragged"


def check_json(browser: Chromium, path: str, name: str) -> None:
    """A JSON item is a download link too; it must hold a JSON object."""
    href = browser.js(f"{eye_button(path)}.getAttribute('href')")
    assert browser.js(f"{eye_button(path)}.getAttribute('download')") == name
    data = json.loads(base64.b64decode(href.split("base64,", 1)[1]).decode())
    assert isinstance(data, dict) and data, (name, data)


def test_report_renders_the_summary_the_tables_and_every_plot(chromium, tiny_report, tmp_path):
    started = time.monotonic()
    seen: dict[str, set] = {}
    summary_text = None
    with Chromium(chromium, width=1400, height=900) as browser:
        try:
            browser.open(tiny_report)
            browser.wait_for(link(CATEGORIES[0]), what="the menu of the report")
            categories = browser.js("categories")
            assert sorted(categories) == CATEGORIES, sorted(categories)
            for category in CATEGORIES:
                subcategories = categories[category]
                for subcategory, paths in subcategories.items():
                    show_category(browser, category, subcategory, several=len(subcategories) > 1)
                    for path in paths:
                        name = path.rsplit("/", 1)[-1]
                        seen.setdefault(category, set()).add(name)
                        mime = browser.js(f"getResultMimeType({json.dumps(path)})")
                        if mime in ("image/svg+xml", "image/png", "image/jpeg"):
                            check_image(browser, path, name)
                        elif mime == "text/html":
                            text = check_html(browser, path, name)
                            if name == "summary.html":
                                summary_text = text
                        elif name.endswith(".tsv"):
                            check_table(browser, path, name)
                        elif name.endswith(".json"):
                            check_json(browser, path, name)
                        else:
                            pytest.fail(f"unexpected item {path} ({mime})")
            assert browser.exceptions() == []
        except BaseException:
            shot = tmp_path / "report-failure.png"
            try:
                browser.screenshot(shot)
                print(f"screenshot of the report at the failure: {shot}")
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
    for category, names in EXPECTED.items():
        assert names <= seen.get(category, set()), (category, sorted(names - seen.get(category, set())))
    assert summary_text is not None, "no written summary in the report"
    for words in SUMMARY_WORDS:
        assert words in summary_text, (words, summary_text)
    assert re.search(r"\d+(\.\d+)?% ± \d+(\.\d+)?%", summary_text), summary_text
    print(f"browser part: {time.monotonic() - started:.1f} s")


def test_the_landing_page_shows_the_decision_first(chromium, tiny_report, tmp_path):
    # The first screen a reader sees, before any click: the decision block of the summary
    # (results/stats/decision.html, shown by workflow/report/workflow.rst), above the
    # description of the workflow.
    shot = tmp_path / "landing.png"
    with Chromium(chromium, width=1400, height=900) as browser:
        browser.open(tiny_report)
        browser.wait_for("document.querySelector('#app .decision') !== null", what="the decision block")
        decision = browser.js("document.querySelector('#app .decision').innerText")
        # where the lines to choose by lie before any scrolling (CSS px; the window is 900 high)
        bottom = browser.js("document.querySelectorAll('#app .decision li')[1].getBoundingClientRect().bottom")
        text = browser.js("document.querySelector('#app').innerText")
        browser.screenshot(shot)
        assert browser.exceptions() == []
    for words in ("Decision", "rule best", "Choose (model_a)", "Expect (model_a)", "corrected for that choice",
                  "Contenders (model_a", "Resolution (model_a)"):
        assert words in decision, (words, decision)
    assert 0 < bottom <= 900, bottom  # Choose and Expect on the first screen, without scrolling
    assert text.index("Decision") < text.index("Cross-validated grid search"), text[:500]
    assert shot.stat().st_size > 0
    print(f"landing page: {shot}")
    # In a window shorter than the page, the page starts at its top: Snakemake centres the landing
    # page, which without workflow.rst's style would put the decision above the reach of scrolling.
    with Chromium(chromium, width=1400, height=300) as browser:
        browser.open(tiny_report)
        browser.wait_for("document.querySelector('#app .decision') !== null", what="the decision block")
        top = browser.js("document.querySelector('#app .decision').getBoundingClientRect().top")
        page = browser.js("document.querySelector('#app .document').getBoundingClientRect().height")
    assert page > 300, page  # the case this checks: a page taller than the window
    assert 0 <= top < 300, top
