#!/usr/bin/env bash
# Debian's espeak-ng (the Mandarin voice pyttsx3 drives, and the test callers' voices) and sox
# (test noise and audio conversion), installed when missing.
set -euo pipefail
packages=()
command -v espeak-ng >/dev/null || packages+=(espeak-ng)
dpkg -s libespeak-ng1 >/dev/null 2>&1 || packages+=(libespeak-ng1)
command -v sox >/dev/null || packages+=(sox)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when apt does not know the packages yet.
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
  apt-get update -qq
fi
apt-get install -y -qq "${packages[@]}" >/dev/null
