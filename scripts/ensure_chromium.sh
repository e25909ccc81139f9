#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it; no browser download), and a
# Chinese font so the screenshots show characters rather than empty boxes.
set -euo pipefail
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || packages+=(fonts-wqy-microhei)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when apt does not know the packages yet.
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
  apt-get update -qq
fi
apt-get install -y -qq "${packages[@]}" >/dev/null
