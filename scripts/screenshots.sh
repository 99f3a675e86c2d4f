#!/usr/bin/env bash
# scripts/screenshots.sh: regenerate the status page's screenshots in
# docs/img/ (linked from docs/status-page.md). They are taken by the browser
# tests of the page (cmd/tidemark/statuspage_test.go) in a real headless
# Chromium against the real binary, so they show the page as it is built;
# nothing is drawn by hand.
#
# Usage: ./scripts/screenshots.sh [extra go test flags, e.g. -v]
# Needs what ./scripts/test.sh installs (Chromium, node, versitygw).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p "$root/docs/img"
export TIDEMARK_SCREENSHOTS="$root/docs/img"
TIDEMARK_TEST_SERVERS=${TIDEMARK_TEST_SERVERS:-versitygw} \
  ./scripts/test.sh ./cmd/tidemark -run 'TestStatusPage' "$@"
ls -l "$root/docs/img"/*.png
