"""Open every page of the built book in a real browser (Debian's Chromium, driven by Playwright).

Run after `jupyter-book build .` (``make browser``). For each page it checks that there are no
console errors and no requests leave the machine, that every image loads, that maths is typeset,
that no raw LaTeX is left in the text, that the kernel-free n_way / k_shot controls change the
figure, and that the launch buttons point at the repository in ``_config.yml``. Every page is also
opened from disk (``file://``), as an offline reader opens it, where it must log no console error;
and at a phone's width (390 px) the table-of-contents button must open the navigation and the
page-contents button the page's contents. A
full-page screenshot of each page goes to ``_build/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("MLBOOK_CHROMIUM", "/usr/bin/chromium")
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}


def book_pages() -> list[Path]:
    if not HTML.exists():
        return []
    pages = []
    for page in sorted(HTML.rglob("*.html")):
        rel = page.relative_to(HTML)
        if rel.parts[0] in SKIP_DIRS or rel.name in ("index.html", "genindex.html"):
            continue  # index.html only redirects to intro.html
        pages.append(rel)
    return pages


PAGES = book_pages()


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))

    class Quiet(handler.func):  # type: ignore[misc,valid-type]
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(HTML))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (see .ci/run)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def repository() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return urlparse(config["repository"]["url"]).path.strip("/")  # owner/name


def test_the_book_was_built():
    assert PAGES, f"no pages under {HTML}: run `jupyter-book build .` first"
    names = {p.as_posix() for p in PAGES}
    assert "intro.html" in names and any(n.startswith("chapters/") for n in names)


def open_page(browser, server, rel: Path, width: int = 1280):
    """``rel`` opened over ``server`` (a ``http://`` address, or ``file://`` and the build
    folder), and the list its errors go to: console errors, page errors, failed requests and
    any request that would leave the machine."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))

    def only_local(route):
        url = urlparse(route.request.url)
        if url.hostname in ("127.0.0.1", "localhost") or url.scheme in ("data", "file"):
            route.continue_()
        else:
            errors.append(f"external request (the book must work offline): {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{server}/{rel.as_posix()}", wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors


#: Text that only un-typeset maths leaves on a page (a ``$$`` or a TeX command).
RAW_LATEX = (r"\$\$|\\(mathcal|mathbf|frac|sum|lVert|hat|nabla|theta|alpha|cdot|begin|end|left"
             r"|right)\b")
PAGE_TEXT = """() => {
    const body = document.querySelector('main') || document.body;
    const copy = body.cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, mjx-container, .MathJax, textarea')
        .forEach(e => e.remove());
    return copy.innerText;
}"""


@pytest.mark.parametrize("rel", PAGES, ids=[p.as_posix() for p in PAGES])
def test_page_from_disk_logs_no_error(browser, rel):
    page, errors = open_page(browser, HTML.as_uri(), rel)
    try:
        page.wait_for_timeout(500)
        assert not errors, "\n".join(errors)
    finally:
        page.close()


@pytest.mark.parametrize("rel", [p for p in PAGES if p.parts[0] == "chapters"][:1] +
                         [p for p in PAGES if p.name == "intro.html"],
                         ids=lambda p: p.as_posix())
def test_the_phone_menu_opens(browser, server, rel):
    page, errors = open_page(browser, server, rel, width=390)
    try:
        nav = page.locator(".bd-sidebar-primary .bd-links a, .bd-sidebar-primary nav a")
        visible_before = sum(a.is_visible() for a in nav.all())
        toggle = page.locator("button.primary-toggle, label.primary-toggle").first
        assert toggle.is_visible(), "no table-of-contents button at a phone's width"
        toggle.click()
        page.wait_for_timeout(600)
        visible_after = sum(a.is_visible() for a in nav.all())
        assert visible_after > visible_before, (
            f"tapping the table-of-contents button showed no navigation "
            f"({visible_before} -> {visible_after} visible links)")
        assert not errors, "\n".join(errors)
    finally:
        page.close()


def test_the_phone_page_contents_button_opens(browser, server):
    """At a phone's width the page-contents (secondary sidebar) button shows the page's own
    table of contents, on a chapter page with sections."""
    rel = next(p for p in PAGES if p.parts[0] == "chapters")
    page, errors = open_page(browser, server, rel, width=390)
    try:
        # The theme moves the sidebar into a modal dialog on a tap; before it, the sidebar sits
        # beside the viewport with visibility: hidden (its links still count as "visible" to
        # Playwright, so the test asks for the sidebar's own place and visibility).
        shown = """() => { const e = document.querySelector('.bd-sidebar-secondary');
            const r = e.getBoundingClientRect();
            return getComputedStyle(e).visibility === 'visible' && r.x >= 0 &&
                   r.x + r.width <= window.innerWidth + 1 && e.querySelectorAll('a').length; }"""
        assert not page.evaluate(shown), "the page contents show before any tap"
        toggle = page.locator("button.secondary-toggle").first
        assert toggle.is_visible(), "no page-contents button at a phone's width"
        toggle.click()
        page.wait_for_timeout(600)
        assert page.evaluate(shown), "tapping the page-contents button showed no contents"
        assert not errors, "\n".join(errors)
    finally:
        page.close()


@pytest.mark.parametrize("rel", PAGES, ids=[p.as_posix() for p in PAGES])
def test_page(browser, server, repository, rel):
    page, errors = open_page(browser, server, rel)
    try:
        # Images: every <img> decoded with a size.
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.getAttribute('src').slice(0, 80))"
        )
        assert not broken, f"images that did not load: {broken}"

        # Maths: every math element becomes a MathJax container.
        n_math = page.locator("div.math, span.math").count()
        if n_math:
            page.wait_for_function(
                "document.querySelectorAll('mjx-container').length >= "
                "document.querySelectorAll('div.math, span.math').length",
                timeout=20_000,
            )
            assert page.locator("mjx-container svg").count() >= n_math

        # No raw LaTeX in the text that a reader sees.
        import re

        raw = re.findall(r".{0,30}(?:" + RAW_LATEX + r").{0,30}", page.evaluate(PAGE_TEXT))
        assert not raw, f"raw LaTeX on the page: {raw[:5]}"

        # Kernel-free controls: moving either control (n_way and k_shot, or the pair of controls a
        # chapter's explorer names itself) changes the figure and shows the new value. An explorer
        # may show several images of which only some depend on a control (9.2's demonstration
        # does not change with the number of inner steps), so all of its images are compared.
        def frames(explorer):
            return [img.get_attribute("src") for img in explorer.locator("img.mlx-frame").all()]

        for explorer in page.locator(".mlbook-static-explorer").all():
            for control in ("n-way", "k-shot"):
                before = frames(explorer)
                slider = explorer.locator(f"input.mlx-{control}")
                target = "0" if slider.input_value() != "0" else slider.get_attribute("max")
                slider.fill(target)  # sets the value and fires the input event
                after = frames(explorer)
                assert len(after) == len(before), f"moving {control} changed the number of images"
                assert after != before, f"moving {control} did not change the figure"
                shown = explorer.locator(f".mlx-{control}-value").inner_text()
                assert shown.strip(), f"moving {control} left its value label empty"

        # Launch buttons on chapter pages point at the configured repository.
        if rel.parts[0] == "chapters":
            links = page.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.href)")
            colab = [u for u in links if "colab.research.google.com" in u]
            assert colab, "the Colab launch button is missing"
            assert not any("mybinder.org" in u for u in links), "Binder is not offered"
            for url in colab:
                assert repository in url, f"{url} does not point at {repository}"
            assert f"chapters/{rel.stem}.ipynb" in colab[0]
            assert page.locator("figcaption").count() >= 1, "figures have captions"
            cites = page.locator("a.reference.internal[href*='references.html']").count()
            assert cites >= 1, "citations link to the references page"

        # Search box.
        assert page.locator("form.bd-search, .search-button, input[name='q']").count() >= 1

        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / (rel.as_posix().replace("/", "__") + ".png")),
                        full_page=True)
        assert not errors, "\n".join(errors)
    finally:
        page.close()
