#!/usr/bin/env bash
# down.sh — end exactly the processes up.sh started, and nothing else.
# The databases, images and configuration stay: up.sh starts them again in
# under a minute.
set -euo pipefail

STATE=${DEVCLOUD_STATE:-/var/lib/phoenix-devcloud}
log() { printf '%s devcloud: %s\n' "$(date +%H:%M:%S)" "$*"; }

[ "$(id -u)" = 0 ] || {
	log "ERROR: run me as root"
	exit 1
}
[ -d "$STATE/run" ] || {
	log "nothing to stop: $STATE/run does not exist"
	exit 0
}

# Stop the APIs and workers first, then the message bus and the database
# they hold connections to.
order=(responder octavia-worker octavia-api cinder-volume cinder-scheduler cinder-api
	nova-compute nova-scheduler nova-conductor nova-api neutron placement glance keystone
	rabbitmq mariadb)

stop() {
	local name=$1 pidf="$STATE/run/$1.pid" pid
	[ -s "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if kill -0 "$pid" 2>/dev/null; then
		# Each daemon leads its own session and process group (setsid):
		# signal the group to reach its workers too.
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 150); do
			kill -0 -- "-$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 -- "-$pid" 2>/dev/null; then
			log "$name did not stop within 15s: killing it"
			kill -KILL -- "-$pid" 2>/dev/null || true
		fi
		log "stopped $name"
	fi
	rm -f "$pidf"
}

for name in "${order[@]}"; do
	ours=""
	[ -s "$STATE/run/$name.pid" ] && ours=1
	stop "$name"
	if [ "$name" = rabbitmq ] && [ -n "$ours" ]; then
		# RabbitMQ's Erlang starts epmd, the port mapper, as a daemon of
		# its own (outside the process group), as the rabbitmq user.
		if pkill -TERM -u rabbitmq -x epmd 2>/dev/null; then
			log "stopped epmd"
		fi
	fi
done
for pidf in "$STATE"/run/*.pid; do # anything else this script's twin started
	[ -e "$pidf" ] && stop "$(basename "$pidf" .pid)"
done

log "all stopped"
