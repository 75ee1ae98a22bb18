#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test (driven by playwright-core;
# `npx playwright install` cannot download browsers here). A missing browser fails that test.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
