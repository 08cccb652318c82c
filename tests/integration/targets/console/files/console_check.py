# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VRM's web console, seen as a user sees it: headless Chromium (Debian's package, driven by Playwright) logs in
to Cockpit on the VRM and opens cockpit-machines on every CNA through Cockpit's host switcher; each CNA's page must
list the VMs given for it. One screenshot per CNA is kept (the test's artifacts).

    console_check.py URL USER PASSWORD-FILE SHOT-DIR CNA=VM[,VM...] [CNA=VM...]

Prints one JSON line: {"hosts": {CNA: [VMs seen]}, "screenshots": [...]}; exits 1 with the reason otherwise."""

import json
import os
import sys
import tempfile

from playwright.sync_api import sync_playwright


def main(argv):
    url, user, pwfile, shots = argv[1:5]
    want = {}
    for spec in argv[5:]:
        host, vms = spec.split("=", 1)
        want[host] = [v for v in vms.split(",") if v]
    with open(pwfile) as f:
        password = f.read().strip()
    os.makedirs(shots, exist_ok=True)
    seen, files = {}, []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=os.environ.get("KVMF_CHROMIUM", "/usr/bin/chromium"), headless=True,
            ignore_https_errors=True, viewport={"width": 1400, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.set_default_timeout(60000)
        page.goto(url)
        page.fill("#login-user-input", user)
        page.fill("#login-password-input", password)
        page.click("#login-button")
        page.wait_for_selector("#hosts-sel, #nav-system, .pf-v5-c-page, .pf-c-page", state="attached")
        for host, vms in want.items():
            # The shell's address of a page on another host: /@HOST/PAGE (Cockpit connects over SSH, as USER).
            page.goto("%s/@%s/machines" % (url.rstrip("/"), host))
            frame = None
            for attempt in range(120):  # pylint: disable=unused-variable
                frame = next((f for f in page.frames if "@%s/machines/" % host in f.url), None)
                if frame is not None:
                    break
                page.wait_for_timeout(500)
            if frame is None:
                raise SystemExit("%s: cockpit-machines did not open (frames: %s)" % (host, [f.url for f in page.frames]))
            # The lab's CNAs run QEMU without KVM (TCG): cockpit-machines first says hardware virtualization is off.
            frame.wait_for_selector("text=/Hardware virtualization is disabled|%s/" % "|".join(vms or ["No VM is running"]))
            if frame.locator("button:has-text('Ignore')").count():
                frame.click("button:has-text('Ignore')")
            for vm in vms:
                frame.wait_for_selector("text=%s" % vm)
            seen[host] = [vm for vm in vms if frame.locator("text=%s" % vm).count() > 0]
            shot = os.path.join(shots, "console-%s.png" % host)
            page.screenshot(path=shot, full_page=True)
            files.append(shot)
        browser.close()
    print(json.dumps({"hosts": seen, "screenshots": files}))


if __name__ == "__main__":
    main(sys.argv)
