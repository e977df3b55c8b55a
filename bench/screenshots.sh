#!/usr/bin/env bash
# Writes a PNG of every web UI page at 1280 px and 390 px wide, light and dark, into
# docs/img/ui/: the browser test that checks each page's headers, labels and phone fit, run
# with SLUICE_SCREENSHOTS=1. Needs Debian's chromium and chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE_SCREENSHOTS=1 cargo test -p sluice --test ui every_page -- --exact every_page_is_safe_self_contained_labelled_and_fits_a_phone
ls docs/img/ui
