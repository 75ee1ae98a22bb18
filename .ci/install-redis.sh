#!/usr/bin/env bash
# Installs Debian's redis-server (7.0; BullMQ needs 6.2 or newer) for the sweep and worker tests,
# which start their own on 127.0.0.1 with no persistence. Nothing is started here. A missing one fails those tests.
set -euo pipefail
if command -v redis-server >/dev/null; then exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
