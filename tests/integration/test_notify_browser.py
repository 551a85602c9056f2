#!/usr/bin/env python3
"""End to end in a real browser: Debian's Chromium, headless, driven by
Selenium (Debian's python3-selenium and chromedriver), on the page that
`nanguard notify` serves at /?thread_id=A&token=..., with a worker, the
real broker and PostgreSQL behind it:
  - a bad message for thread A (through the worker) shows a yellow warning
    banner with the event's message (the worker's default sentence), and
    the technical reason under "Technical details";
  - a checkpoint_flush_critical_error shows a red banner with a "Contact
    Support" link to --support-url, above the yellow one (newest first);
  - a message holding <img src=x onerror=alert(1)> appears as literal text:
    no img element, no alert;
  - dismissing a banner removes it; after the gateway restarts and the page
    reconnects by itself, no banner comes twice and a new event still
    shows.
Run with Debian's python3 (/usr/bin/python3), which has selenium."""
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

SECRET = "browser-test-secret"
SUPPORT = "https://support.example.com/ticket?from=nanguard"
XSS = "<img src=x onerror=alert(1)>"


def browser(profile):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1100,900", "--user-data-dir=" + profile):
        opts.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=opts)


def banners(drv):
    """[(class, message text, element)] top to bottom."""
    out = []
    for b in drv.find_elements(By.CSS_SELECTOR, "#banners .banner"):
        msg = b.find_element(By.CSS_SELECTOR, ".banner-message")
        out.append((b.get_attribute("class"), msg.get_attribute("textContent"), b))
    return out


def no_alert(drv):
    try:
        drv.switch_to.alert.text  # noqa: B018 - raises when there is none
        return False
    except NoAlertPresentException:
        return True


def note(thread, kind, message, details):
    value = {"thread_id": thread, "type": kind,
             "severity": "critical" if "critical" in kind else "warning",
             "message": message, "error_details": details,
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    return e2e.Msg("note", thread.encode(), json.dumps(value).encode())


def body():
    names = e2e.Names("browser")
    names.create(partitions=2)
    d = e2e.workdir("browser")
    secret_file = os.path.join(d, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    A = "browser-A-%s" % e2e.RUN
    w = e2e.Worker("w", d, names.topic, names.group, names.table,
                   e2e.worker_args_fast()).start()
    gw_args = ["--token-secret-file", secret_file, "--support-url", SUPPORT,
               "--retry-ms", "500"]
    gw = e2e.Gateway("g1", d, names.notify, gw_args).start()
    # A dead letter for A before the page opens: the page gets it as backlog.
    e2e.produce(names.topic, [e2e.Msg("bad_envelope", A.encode(), json.dumps(
        {"thread_id": A, "checkpoint_id": "x", "checkpoint": "not an object"}).encode())],
        os.path.join(d, "p1.txt"))
    check(e2e.wait_until(lambda: any(n and n.get("thread_id") == A for _, n in
                                     e2e.notifications(names.notify)), 90, 0.5),
          "the worker notified the dead letter of A")

    profile = tempfile.mkdtemp(prefix="nanguard-chromium-", dir=d)
    drv = browser(profile)
    try:
        drv.set_page_load_timeout(30)
        url = gw.url("/?thread_id=%s&token=%s" % (A, e2e.token(SECRET, A)))
        drv.get(url)
        say("page opened: %s" % drv.title)
        got = e2e.wait_until(lambda: banners(drv), 15, 0.2)
        check(got and "banner-warning" in got[0][0] and got[0][1] == e2e.FLUSH_ERROR_MESSAGE,
              "a yellow warning banner with the event's message", [(c, m) for c, m, _ in got or []])
        if got:
            bg = got[0][2].value_of_css_property("background-color")
            check(bg in ("rgba(255, 248, 197, 1)", "rgb(255, 248, 197)"),
                  "the warning banner is yellow (%s)" % bg)
            details = got[0][2].find_element(By.CSS_SELECTOR, ".banner-details pre")
            check(details.get_attribute("textContent"),
                  "the technical reason (error_details) is under Technical details",
                  details.get_attribute("textContent"))

        e2e.produce(names.notify, [note(A, "checkpoint_flush_critical_error", e2e.CRITICAL_MESSAGE,
                                        "the database is unavailable: connection refused")],
                    os.path.join(d, "p2.txt"))
        got = e2e.wait_until(lambda: len(banners(drv)) >= 2 and banners(drv), 10, 0.2)
        crit = got[0] if got else None
        check(crit and "banner-critical" in crit[0] and crit[1] == e2e.CRITICAL_MESSAGE,
              "a red critical banner, newest first", [(c, m) for c, m, _ in got or []])
        if crit:
            bg = crit[2].value_of_css_property("background-color")
            check(bg in ("rgba(255, 235, 233, 1)", "rgb(255, 235, 233)"),
                  "the critical banner is red (%s)" % bg)
            links = crit[2].find_elements(By.CSS_SELECTOR, "a.contact-support")
            check(len(links) == 1 and links[0].text == "Contact Support" and
                  links[0].get_attribute("href") == SUPPORT,
                  "with a Contact Support link to --support-url",
                  [(a.text, a.get_attribute("href")) for a in links])

        e2e.produce(names.notify, [note(A, "checkpoint_flush_error", XSS,
                                        "<script>alert(2)</script> from the database")],
                    os.path.join(d, "p3.txt"))
        got = e2e.wait_until(lambda: len(banners(drv)) >= 3 and banners(drv), 10, 0.2)
        top = got[0] if got else None
        check(top and top[1] == XSS, "a message holding %s appears as literal text" % XSS,
              [(c, m) for c, m, _ in got or []])
        check(not drv.find_elements(By.CSS_SELECTOR, "#banners img, #banners script"),
              "no img or script element was made from event text")
        check(no_alert(drv), "no alert ran")
        shot = os.path.join(d, "banners.png")
        drv.save_screenshot(shot)
        say("screenshot: %s" % shot)

        # Dismiss the critical banner.
        crit_el = [b for c, m, b in banners(drv) if "banner-critical" in c]
        if crit_el:
            crit_el[0].find_element(By.CSS_SELECTOR, ".banner-dismiss").click()
        left = e2e.wait_until(lambda: len(banners(drv)) == 2 and banners(drv), 5, 0.1)
        check(left and not any("banner-critical" in c for c, _, _ in left),
              "the dismiss button removes the banner", [(c, m) for c, m, _ in left or []])

        # The gateway restarts on the same port; the page reconnects itself.
        port = gw.port
        gw.term(30)
        gw2 = e2e.Gateway("g2", d, names.notify, gw_args)
        gw2.args[gw2.args.index("127.0.0.1:0")] = "127.0.0.1:%d" % port
        gw2.start()
        state = e2e.wait_until(lambda: drv.find_element(By.ID, "connection").text == "live",
                               20, 0.2)
        check(state, "the page reconnects to the restarted gateway")
        e2e.produce(names.notify, [note(A, "checkpoint_flush_error", "after the restart", "")],
                    os.path.join(d, "p4.txt"))
        got = e2e.wait_until(lambda: len(banners(drv)) >= 3 and banners(drv), 10, 0.2)
        time.sleep(1)
        texts = [m for _, m, _ in banners(drv)]
        ids = [b.get_attribute("data-event-id") for _, _, b in banners(drv)]
        check(texts == ["after the restart", XSS, e2e.FLUSH_ERROR_MESSAGE] and
              len(set(ids)) == len(ids),
              "after the reconnect: the new event on top, no banner twice, the dismissed "
              "one stays away", texts)
        gw2.term(30)
    finally:
        drv.quit()
    w.term(60)
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
