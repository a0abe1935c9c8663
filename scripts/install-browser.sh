#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser test (tests/test_label_studio_ui.py), which runs this script when
# they are missing. Needs root and a Debian mirror; without them the test is skipped with this script's output.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-browser: not root: install Debian's chromium and chromium-driver, then run the tests again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "install-browser: $(chromium --version), $(chromedriver --version | cut -d' ' -f1-2)" >&2
