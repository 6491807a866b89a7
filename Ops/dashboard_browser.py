#!/usr/bin/env python3
"""Drives Debian's chromium (headless, through selenium and chromium-driver) on Kiln's
dashboard while a job runs, and checks what the page shows.

Usage: dashboard_browser.py URL --blocks N --screenshot FILE [--final-screenshot FILE]
                            [--expect-perplexity] [--timeout S]

Asserts: the job appears; the block table has a row for every block; block stages change
live (waiting -> ... -> done, with a stage in between seen for some block); a screenshot
is taken mid-job; at the end the job is "succeeded", every row is "done", the heatmap has
a coloured cell for every (block, linear), the phase-time plot is drawn and, with
--expect-perplexity, the perplexity plot shows before and after. Prints a JSON summary.
"""
import argparse
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def fail(msg):
    print(f"dashboard_browser.py: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--blocks", type=int, required=True)
    p.add_argument("--screenshot", required=True)
    p.add_argument("--final-screenshot")
    p.add_argument("--expect-perplexity", action="store_true")
    p.add_argument("--timeout", type=float, default=600)
    a = p.parse_args()

    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1500,1500"):
        o.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    try:
        return run(driver, a)
    finally:
        driver.quit()


# The page redraws as events arrive, so it is read in one script call, never element by element.
READ = """
const q = (sel) => [...document.querySelectorAll(sel)];
return {
  jobs: q("#jobs tbody tr").length,
  rows: q("#blocks tbody tr").map((tr) => [Number(tr.dataset.block), tr.dataset.stage]),
  state: (document.getElementById("job-state") || {}).textContent || "",
  cells: q("#heat td.cell").length,
  linears: Math.max(0, q("#heat tr:first-child th").length - 1),
  phases: q("#phase-plot text").map((t) => t.textContent),
  ppl: q("#ppl-plot text").map((t) => t.textContent),
  ppl_none: !!document.getElementById("ppl-none"),
  workers: q("#workers tbody tr").map((tr) => tr.dataset.worker),
};
"""


def page(driver):
    return driver.execute_script(READ)


def rows(driver):
    """block -> stage, from the block table's data attributes."""
    return {b: s for b, s in page(driver)["rows"]}


def run(driver, a):
    driver.get(a.url)
    deadline = time.time() + a.timeout
    # The job shows up with its rows.
    while time.time() < deadline:
        p = page(driver)
        if p["jobs"] and len(p["rows"]) == a.blocks:
            break
        time.sleep(0.2)
    else:
        fail(f"no job with {a.blocks} block rows on the page: {driver.page_source[:2000]}")
    history = {}  # block -> stages seen, in order
    shot = False
    state = ""
    while time.time() < deadline:
        p = page(driver)
        r = {b: s for b, s in p["rows"]}
        for b, s in r.items():
            seen = history.setdefault(b, [])
            if not seen or seen[-1] != s:
                seen.append(s)
        state = p["state"]
        done = sum(1 for s in r.values() if s == "done")
        # Mid-job: some blocks done, some not.
        if not shot and a.blocks // 2 <= done < a.blocks - 2:
            driver.save_screenshot(a.screenshot)
            shot = True
        if state in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    if state != "succeeded":
        fail(f"the page shows the job as '{state}', not succeeded")
    if not shot:
        fail("the job ended before the page showed it part-done (no mid-job screenshot)")
    changed = [b for b, h in history.items() if len(h) >= 2]
    intermediate = [b for b, h in history.items() if any(s not in ("waiting", "done") for s in h)]
    if not changed or not intermediate:
        fail(f"block stages did not change live: {history}")
    # The final report: heatmap, phase times, perplexity (which `kiln run` measures after writing).
    p = page(driver)
    while a.expect_perplexity and time.time() < deadline and not p["ppl"]:
        time.sleep(0.25)
        p = page(driver)
    r = {b: s for b, s in p["rows"]}
    if sorted(r) != list(range(a.blocks)) or set(r.values()) != {"done"}:
        fail(f"at the end not every block row is done: {r}")
    if p["linears"] < 1 or p["cells"] != a.blocks * p["linears"]:
        fail(f"heatmap: {p['cells']} coloured cells for {a.blocks} blocks x {p['linears']} linears")
    phase_names = p["phases"][::2]
    for name in ("statistics", "reconstruct", "job"):
        if name not in phase_names:
            fail(f"phase plot lacks '{name}': {p['phases']}")
    want = None
    if a.expect_perplexity:
        ppl = p["ppl"]
        if "before" not in ppl or "after" not in ppl:
            fail(f"perplexity plot: {ppl}")
        want = {ppl[i]: float(ppl[i + 1]) for i in range(0, len(ppl) - 1, 2)}
    elif not p["ppl_none"]:
        fail("no perplexity plot and no note saying why")
    if not p["workers"]:
        fail("no worker row")
    if a.final_screenshot:
        driver.save_screenshot(a.final_screenshot)
    print(json.dumps({
        "blocks": a.blocks, "linears": p["linears"], "stages_seen": sorted({s for h in history.values() for s in h}),
        "blocks_seen_changing": len(changed), "workers": p["workers"], "phases": phase_names,
        "perplexity": want, "screenshot": a.screenshot,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
