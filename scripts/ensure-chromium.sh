#!/usr/bin/env bash
# Makes sure Chromium (the Debian package) is installed and prints its path:
# the admin UI's browser tests (controlplane/uitest) drive a real headless
# Chromium through the DevTools protocol (chromedp). `make test` passes the
# path to the tests as CHROMIUM_BIN. Installing it takes about a minute and
# ~300 MB of packages on a fresh Debian 12 (25 s here with the package
# lists already fetched). fonts-dejavu-core gives the screenshots one font.
set -euo pipefail
find_chromium() {
	local c
	for c in chromium chromium-browser /usr/bin/chromium; do
		if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
	done
	return 1
}
if path=$(find_chromium); then echo "$path"; exit 0; fi
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
echo "installing chromium (Debian package) for the admin UI's browser tests" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
find_chromium
