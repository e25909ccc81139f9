#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are not installed yet (as root).
# The make targets name what they need (see the Makefile's VOICE_PACKAGES and TEST_PACKAGES).
set -euo pipefail
missing=()
for package in "$@"; do
  # A tool already on PATH (npm bundled with a nodesource nodejs, say) counts as installed: the
  # Debian package would conflict with it.
  dpkg -s "$package" >/dev/null 2>&1 || command -v "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when apt does not know the packages yet.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq
fi
apt-get install -y -qq "${missing[@]}" >/dev/null
