"""Look at the HTML reports as a person would: render them in headless Chromium and fail on what a
reader would see broken.

    .venv/bin/python scripts/report_check.py [--build] [--out reports/check] [PAGE.html ...]

``--build`` first writes tiny reports (compare on 8,000 rows of data/sample.csv with the fairness
machinery switched off, a 4-family sweep and a 3-size scale) into OUT/pages. Each page is then copied
(the shipped file is never touched) with a small script that records JavaScript errors and console
errors, images that did not decode (naturalWidth 0) and elements wider than their box or than the
1400 px window, and writes its verdict into the page; Chromium's ``--dump-dom`` reads it back and
``--screenshot`` saves the whole page as OUT/NAME.png, 1400 px wide. Exit 0 when every page is clean,
1 when one is not (each problem printed), 0 with a SKIPPED line when no Chromium is installed (so the
check never fails for lack of a browser; read the line).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 1400
ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
VERDICT_ID = "report-check-verdict"

# runs before the page's own content: errors are caught from the start; the verdict is written at load
PROBE = """<script>
(function(){
  var errors = [];
  window.addEventListener('error', function(e){ errors.push('error: ' + (e.message || (e.target && e.target.src
    ? 'cannot load ' + String(e.target.src).slice(0, 80) : 'unknown'))); }, true);
  var consoleError = console.error;
  console.error = function(){ errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return consoleError.apply(console, arguments); };
  function describe(el){ return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') +
    ' "' + (el.textContent || '').trim().slice(0, 60) + '"'; }
  window.addEventListener('load', function(){
    var images = [], overflow = [], reported = [], view = document.documentElement.clientWidth;
    Array.prototype.forEach.call(document.images, function(img){
      if (!img.complete || img.naturalWidth === 0) images.push(img.alt || img.src.slice(0, 60)); });
    Array.prototype.forEach.call(document.body.querySelectorAll('*'), function(el){
      if (el.id === '""" + VERDICT_ID + """') return;
      // only the outermost element that overflows: its rows and cells overflow with it
      for (var i = 0; i < reported.length; i++) if (reported[i].contains(el)) return;
      var r = el.getBoundingClientRect(), style = getComputedStyle(el);
      if (r.width === 0 && r.height === 0) return;
      var problem = '';
      if (r.right > view + 1) problem = ' ends at ' + Math.round(r.right) + ' px, past the ' + view + ' px window';
      else if (style.overflowX === 'visible' && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0
               && style.display !== 'inline')
        problem = ' content ' + el.scrollWidth + ' px wide in a ' + el.clientWidth + ' px box';
      if (problem) { overflow.push(describe(el) + problem); reported.push(el); }
    });
    var out = document.createElement('pre');
    out.id = '""" + VERDICT_ID + """';
    out.style.display = 'none';
    out.textContent = JSON.stringify({errors: errors, images: images, overflow: overflow.slice(0, 20),
      overflow_count: overflow.length, height: document.documentElement.scrollHeight,
      backticks: (document.body.innerText.match(/`/g) || []).length});
    document.body.appendChild(out);
  });
})();
</script>"""


def find_browser(given: str | None) -> str | None:
    if given:
        return shutil.which(given) or (given if os.access(given, os.X_OK) else None)
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def browser_args(browser: str, profile: str, height: int) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
            "--virtual-time-budget=10000"]


def probe_copy(page: Path, into: Path) -> Path:
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text)
    at = head.end() if head else 0
    copy = into / f"{page.stem}.check.html"
    copy.write_text(text[:at] + PROBE + text[at:], encoding="utf-8")
    return copy


def check_page(browser: str, page: Path, out: Path, work: Path) -> list[str]:
    """The problems a reader would meet on ``page`` (empty = clean); the screenshot goes to out/NAME.png."""
    copy = probe_copy(page, work)
    profile = tempfile.mkdtemp(prefix="chr-", dir=work)
    run = subprocess.run([*browser_args(browser, profile, 2200), "--dump-dom", copy.as_uri()],
                         capture_output=True, text=True, timeout=180)
    found = re.search(rf"<pre id=\"{VERDICT_ID}\"[^>]*>(.*?)</pre>", run.stdout, re.S)
    if not found:
        return [f"{page}: Chromium gave no verdict (exit {run.returncode}): {run.stderr.strip()[-300:]}"]
    import html

    verdict = json.loads(html.unescape(found.group(1)))
    shot = out / f"{page.stem}.png"
    height = min(max(int(verdict["height"]), 600), 30000)
    subprocess.run([*browser_args(browser, profile, height), f"--screenshot={shot}", copy.as_uri()],
                   capture_output=True, text=True, timeout=180)
    problems = [f"{page}: {e}" for e in verdict["errors"]]
    problems += [f"{page}: image did not load: {name}" for name in verdict["images"]]
    problems += [f"{page}: overflows: {o}" for o in verdict["overflow"]]
    if verdict["overflow_count"] > len(verdict["overflow"]):
        problems.append(f"{page}: ... {verdict['overflow_count'] - len(verdict['overflow'])} more overflowing")
    if verdict["backticks"]:
        problems.append(f"{page}: {verdict['backticks']} literal backtick(s) in the text")
    if not shot.exists():
        problems.append(f"{page}: no screenshot was written")
    return problems


def build(pages: Path) -> list[Path]:
    """Tiny compare, sweep and scale reports (a few minutes on two shared cores)."""
    sample = ROOT / "data" / "sample.csv"
    pages.mkdir(parents=True, exist_ok=True)
    tiny = pages / "tiny.csv"
    with open(sample, encoding="utf-8") as src:
        tiny.write_text("".join(line for _, line in zip(range(8001), src, strict=False)), encoding="utf-8")
    cli = [sys.executable, "-m", "mfvsdnn"]
    data = [str(tiny), "--user-features", "country,age_band"]
    commands = [
        [*cli, "compare", *data, "--repeats", "1", "--tune", "1", "--growth-repeats", "2", "--bootstrap", "50",
         "--serving-sample", "20", "--wals-param", "iterations=4", "--softmax-param", "epochs=2",
         "--softmax-param", "min_steps=0", "--report-dir", str(pages / "compare")],
        [*cli, "sweep", *data, "--w0", "0,0.1", "--negatives", "0,20", "--sampler", "uniform,popularity",
         "--gravity", "0,0.1", "--wals-param", "factors=8", "--softmax-param", "epochs=2", "--bootstrap", "20",
         "--report-dir", str(pages / "sweep")],
        [*cli, "scale", "--sizes", "150,300,600", "--users-per-item", "1", "--examples-timed", "500",
         "--latency-queries", "3", "--factors", "8", "--report-dir", str(pages / "scale")],
    ]
    for command in commands:
        print("building:", " ".join(command[2:]), flush=True)
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"report-check: building failed: {' '.join(command[2:])}\n{done.stdout[-2000:]}"
                             f"{done.stderr[-2000:]}")
    return [pages / "compare" / "report.html", pages / "sweep" / "sweep.html", pages / "scale" / "scale.html"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", type=Path, help="HTML reports to check")
    parser.add_argument("--build", action="store_true", help="write tiny compare, sweep and scale reports first")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "check", help="where the PNGs go")
    parser.add_argument("--browser", help="the Chromium binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    browser = find_browser(args.browser)
    if browser is None:
        print("report-check SKIPPED: no Chromium found (apt-get install chromium); nothing was checked")
        return 0
    pages = list(args.pages)
    if args.build:
        pages += build(args.out / "pages")
    if not pages:
        parser.error("give HTML pages or --build")
    missing = [p for p in pages if not p.is_file()]
    if missing:
        print(f"report-check: no such page: {', '.join(map(str, missing))}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="report-check-") as work:
        for page in pages:
            found = check_page(browser, page, args.out, Path(work))
            print(f"{'ok  ' if not found else 'FAIL'} {page} -> {args.out / (page.stem + '.png')}")
            problems += found
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
