#!/usr/bin/env bash
# install.sh — install Debian's prometheus package, for the tests of
# Phoenix's Prometheus blocker (controller/blocker), which run a real
# Prometheus from it (the tests start their own; this only installs).
#
# Idempotent: when the package is installed it only prints the version.
# The package must not start its service: the tests run prometheus
# themselves, a container often has no systemd, and a running service
# would hold port 9090 for nothing. Root is needed for apt-get; sudo is
# used when not root.
#
#   examples/prometheus/install.sh
set -euo pipefail

log() { printf '%s prometheus: %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
	log "ERROR: $*"
	exit 1
}

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
	log "installing Debian's prometheus package"
	# policy-rc.d answering 101 ("action forbidden") keeps the postinst from
	# starting the service; one that was already there stays as it is.
	ours=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod +x /usr/sbin/policy-rc.d
		ours=1
		trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt_log=$(mktemp)
	if ! { $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends prometheus; } >"$apt_log" 2>&1; then
		tail -n 30 "$apt_log" >&2
		die "apt-get install prometheus failed (log above)"
	fi
	rm -f "$apt_log"
	if [ -n "$ours" ]; then
		$SUDO rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
fi

bin=$(command -v prometheus || echo /usr/bin/prometheus)
[ -x "$bin" ] || die "the package is installed but $bin is missing"
"$bin" --version 2>&1 | head -n 1
