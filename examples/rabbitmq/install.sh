#!/usr/bin/env bash
# install.sh — install Debian's rabbitmq-server package, for the tests of
# Phoenix's notification listener (controller/notifications), which run
# private RabbitMQ nodes from it (the tests start their own, on free
# ports with their own epmd; this only installs).
#
# Idempotent: when the package is installed it only prints the version.
# The package must not start its service: the tests run the broker
# themselves, a container often has no systemd, and a running service
# would hold port 5672 and an epmd for nothing. Root is needed for
# apt-get; sudo is used when not root.
#
#   examples/rabbitmq/install.sh
set -euo pipefail

log() { printf '%s rabbitmq: %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
	log "ERROR: $*"
	exit 1
}

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

if ! dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null | grep -q "install ok installed"; then
	log "installing Debian's rabbitmq-server package"
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
		apt-get install -y -q --no-install-recommends rabbitmq-server; } >"$apt_log" 2>&1; then
		tail -n 30 "$apt_log" >&2
		die "apt-get install rabbitmq-server failed (log above)"
	fi
	rm -f "$apt_log"
	if [ -n "$ours" ]; then
		$SUDO rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
fi

# The start script itself (/usr/sbin/rabbitmq-server is a wrapper that
# switches to the rabbitmq user), and epmd, which the tests run privately.
server=/usr/lib/rabbitmq/bin/rabbitmq-server
[ -x "$server" ] || die "the package is installed but $server is missing"
command -v epmd >/dev/null || ls /usr/lib/erlang/erts-*/bin/epmd >/dev/null 2>&1 ||
	die "the package is installed but epmd (erlang-base) is missing"
log "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server) installed"
