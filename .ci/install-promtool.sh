#!/usr/bin/env bash
# Installs promtool (Debian's prometheus package) for the test that lints /metrics with
# `promtool check metrics`. The package's server is never started: a policy-rc.d denies it.
set -euo pipefail
if command -v promtool >/dev/null; then exit 0; fi
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
