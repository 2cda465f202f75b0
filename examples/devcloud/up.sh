#!/usr/bin/env bash
# up.sh — bring up a real OpenStack (Zed, Debian 12's own packages) on this
# one machine, for Phoenix's contract and end-to-end tests, or to try
# Phoenix by hand.
#
# Keystone, Glance, Placement, Nova with the fake virt driver, Neutron with
# its test mechanism driver (servers get 127.1.x.y addresses, no agents),
# Cinder with its fake volume driver and Octavia with noop drivers, on
# MariaDB and RabbitMQ, all on 127.0.0.1.
# A health responder on 0.0.0.0:18080 answers for every fake server.
#
# Run as root on Debian 12. Idempotent: a second run on a running cloud
# checks, changes nothing and returns. Everything it starts is recorded in
# $DEVCLOUD_STATE/run and ended by down.sh.
#
#   sudo examples/devcloud/up.sh
#   export OS_CLIENT_CONFIG_FILE=/var/lib/phoenix-devcloud/clouds.yaml OS_CLOUD=devcloud
set -euo pipefail

STATE=${DEVCLOUD_STATE:-/var/lib/phoenix-devcloud}
RESPONDER_PORT=${DEVCLOUD_RESPONDER_PORT:-18080}
HERE=$(cd "$(dirname "$0")" && pwd)
# Daemons must not keep the caller's directory as their working directory:
# if it goes away (a CI checkout), RabbitMQ can no longer run commands.
cd /
PY=/usr/bin/python3 # Debian's, which the OpenStack packages are built for
BEGAN=$(date +%s)

log() { printf '%s devcloud: %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
	log "ERROR: $*"
	exit 1
}

[ "$(id -u)" = 0 ] || die "run me as root"
grep -q '^12\.' /etc/debian_version 2>/dev/null || die "this script knows Debian 12 (bookworm) only"

mkdir -p "$STATE"/{run,log,secrets,done}
chmod 700 "$STATE" "$STATE/secrets"

# --- secrets: made once, kept in $STATE/secrets (mode 0600) -----------------
secret() {
	local f="$STATE/secrets/$1"
	if [ ! -s "$f" ]; then
		(umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$f")
	fi
	cat "$f"
}
DB_PW=$(secret db)
RABBIT_PW=$(secret rabbit)
ADMIN_PW=$(secret admin)
SERVICE_PW=$(secret service)
PHOENIX_PW=$(secret phoenix)
PHOENIX_RABBIT_PW=$(secret rabbit-phoenix)
CA_PW=$(secret octavia-ca)

# --- packages --------------------------------------------------------------
PACKAGES=(mariadb-server rabbitmq-server keystone glance-api placement-api
	nova-api nova-conductor nova-scheduler nova-compute neutron-server
	neutron-common octavia-api octavia-worker python3-openstackclient
	python3-octaviaclient python3-pymysql uwsgi-core uwsgi-plugin-python3
	openssl curl cinder-api cinder-scheduler cinder-volume
	python3-cinderclient)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${#missing[@]} packages (about 3 minutes on a fresh machine)"
	export DEBIAN_FRONTEND=noninteractive
	# The packages must not start services: this script starts them.
	ours=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		ours=1
	fi
	apt-get update -q >"$STATE/log/apt.log" 2>&1
	apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1 ||
		die "apt-get install failed; see $STATE/log/apt.log"
	[ -z "$ours" ] || rm -f /usr/sbin/policy-rc.d
fi

# --- process helpers ---------------------------------------------------------
# Each daemon runs in its own session (setsid), so down.sh can end it and
# every child it forked, and nothing else.
running() {
	local pidf="$STATE/run/$1.pid"
	[ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null
}

declare -A CHANGED=()

# start NAME CMD... starts a daemon unless it runs; a daemon whose config
# changed in this run is restarted.
start() {
	local name=$1
	shift
	if running "$name" && [ -z "${CHANGED[$name]:-}" ]; then
		return 0
	fi
	if running "$name"; then
		log "restarting $name: its configuration changed"
		stop_one "$name"
	fi
	setsid "$@" >>"$STATE/log/$name.log" 2>&1 </dev/null &
	echo $! >"$STATE/run/$name.pid"
	log "started $name (pid $!)"
}

stop_one() {
	local pidf="$STATE/run/$1.pid" pid
	[ -s "$pidf" ] || return 0
	pid=$(cat "$pidf")
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pid" 2>/dev/null || true
	rm -f "$pidf"
}

# put FILE SERVICE...: write stdin to FILE when it differs, and mark the
# services that read it as changed. Files hold passwords: mode 0640,
# root's (the services run as root), unless MODE says otherwise.
put() {
	local file=$1 tmp
	shift
	tmp=$(mktemp)
	cat >"$tmp"
	if ! cmp -s "$tmp" "$file" 2>/dev/null; then
		mkdir -p "$(dirname "$file")"
		install -m "${MODE:-0640}" "$tmp" "$file"
		for s in "$@"; do CHANGED[$s]=1; done
	fi
	rm -f "$tmp"
}

# wait_for WHAT SECONDS CMD...: poll until CMD succeeds.
wait_for() {
	local what=$1 limit=$2
	shift 2
	for _ in $(seq $((limit * 4))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.25
	done
	die "$what did not come up within ${limit}s; see $STATE/log/"
}

# once KEY CMD...: run a schema migration or other one-time step once per
# installed version of the OpenStack packages, so a second run is quick.
once() {
	local key=$1 stamp
	shift
	stamp="$STATE/done/$key-$(dpkg-query -W -f='${Version}' python3-"${key%%-*}" 2>/dev/null || echo unknown)"
	[ -e "$stamp" ] && return 0
	"$@" >>"$STATE/log/$key.log" 2>&1 || die "$key failed; see $STATE/log/$key.log"
	mkdir -p "$STATE/done"
	touch "$stamp"
}

http_up() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" | grep -qE '^(2|3|401)'; }

uwsgi_api() { # NAME PORT WSGI-FILE PROCESSES
	start "$1" uwsgi --plugins python3 --http-socket "127.0.0.1:$2" --wsgi-file "$3" \
		--processes "$4" --threads 1 --master --die-on-term --need-app \
		--add-header "Connection: close" --buffer-size 65535
}

# --- MariaDB -------------------------------------------------------------------
MODE=0644 put /etc/mysql/mariadb.conf.d/99-phoenix-devcloud.cnf mariadb <<EOF
[mysqld]
bind-address = 127.0.0.1
max_connections = 1000
innodb_buffer_pool_size = 256M
EOF
if [ ! -d /var/lib/mysql/mysql ]; then
	mysql_install_db --user=mysql >>"$STATE/log/mariadb.log" 2>&1
fi
install -d -o mysql -g mysql /run/mysqld
start mariadb mariadbd --user=mysql
wait_for MariaDB 60 mysqladmin --protocol=socket ping

sql() { mysql --protocol=socket -u root -e "$1"; }
for db in keystone glance placement nova_api nova nova_cell0 neutron octavia cinder; do
	sql "CREATE DATABASE IF NOT EXISTS $db"
done
for host in localhost 127.0.0.1; do
	sql "CREATE USER IF NOT EXISTS 'openstack'@'$host' IDENTIFIED BY '$DB_PW'; ALTER USER 'openstack'@'$host' IDENTIFIED BY '$DB_PW'"
	for db in keystone glance placement nova_api nova nova_cell0 neutron octavia cinder; do
		sql "GRANT ALL PRIVILEGES ON $db.* TO 'openstack'@'$host'"
	done
done
DB="mysql+pymysql://openstack:$DB_PW@127.0.0.1"

# --- RabbitMQ --------------------------------------------------------------------
MODE=0644 put /etc/rabbitmq/rabbitmq-env.conf rabbitmq <<EOF
NODE_IP_ADDRESS=127.0.0.1
NODENAME=rabbit@localhost
EOF
start rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
	env HOME=/var/lib/rabbitmq ERL_EPMD_ADDRESS=127.0.0.1 /usr/lib/rabbitmq/bin/rabbitmq-server
wait_for RabbitMQ 120 env HOME=/var/lib/rabbitmq rabbitmqctl -n rabbit@localhost status
rmq() { env HOME=/var/lib/rabbitmq rabbitmqctl -n rabbit@localhost -q "$@"; }
rmq list_users | grep -q '^openstack' || rmq add_user openstack "$RABBIT_PW" >/dev/null
rmq change_password openstack "$RABBIT_PW" >/dev/null
rmq set_permissions openstack '.*' '.*' '.*' >/dev/null
RABBIT="rabbit://openstack:$RABBIT_PW@127.0.0.1:5672/"

# Nova and Glance publish notifications (below). oslo.messaging declares a
# queue for each topic and priority it publishes to (notifications.info,
# versioned_notifications.info, ....error, ...) and binds it, so the
# messages are kept for a consumer such as Ceilometer. None runs here:
# bound those queues, or the broker grows without end. A consumer of its
# own (Phoenix's) binds a queue of another name and is not touched.
NOTIF_POLICY=devcloud-notifications
NOTIF_PATTERN='^(versioned_)?notifications\.[a-z]+$'
NOTIF_DEFINITION='{"max-length":1000,"overflow":"drop-head"}'
policy_in_force() { # NAME PATTERN DEFINITION: is it set, as given, on queues?
	rmq list_policies --formatter json | "$PY" -c '
import json, sys
name, pattern, definition = sys.argv[1:]
for p in json.load(sys.stdin):
    if p.get("name") == name:
        ok = (p.get("pattern") == pattern and p.get("apply-to") == "queues"
              and json.loads(p["definition"]) == json.loads(definition))
        sys.exit(0 if ok else 1)
sys.exit(1)' "$@"
}
if ! policy_in_force "$NOTIF_POLICY" "$NOTIF_PATTERN" "$NOTIF_DEFINITION"; then
	rmq set_policy --apply-to queues "$NOTIF_POLICY" "$NOTIF_PATTERN" "$NOTIF_DEFINITION" >/dev/null
	log "set RabbitMQ policy $NOTIF_POLICY: at most 1000 messages in each unread notification queue"
fi

# Phoenix's own RabbitMQ user, as the top-level README tells operators:
# configure and write on its own queues (phoenix, phoenix-<replica>), read
# on them (to consume) and on the services' exchanges (to bind). It may not
# declare, delete, publish to or read anything else: not Ceilometer's
# notifications.info, not the nova exchange. Read on nova alone would let
# it bind any routing key there and so copy Nova's RPC (compute.<host>,
# conductor, ..., whose messages carry the callers' tokens): the topic
# permissions allow binding to the notification keys only. Each step is
# checked first, so a second run changes nothing (rabbitmqctl takes about
# 1.5 s a call).
PHOENIX_RABBIT_PERMS=('^phoenix.*' '^phoenix.*' '^(phoenix.*|nova|glance)$')
PHOENIX_RABBIT_TOPICS='^(notifications|versioned_notifications)\.info$'
if ! perms=$(rmq list_user_permissions --no-table-headers phoenix 2>/dev/null); then
	rmq add_user phoenix "$PHOENIX_RABBIT_PW" >/dev/null
	log "added RabbitMQ user phoenix"
	perms=""
elif ! rmq authenticate_user phoenix "$PHOENIX_RABBIT_PW" >/dev/null 2>&1; then
	rmq change_password phoenix "$PHOENIX_RABBIT_PW" >/dev/null
	log "set the password of RabbitMQ user phoenix"
fi
if ! grep -qxF "$(printf '/\t%s\t%s\t%s' "${PHOENIX_RABBIT_PERMS[@]}")" <<<"$perms"; then
	rmq set_permissions -p / phoenix "${PHOENIX_RABBIT_PERMS[@]}" >/dev/null
	log "set the permissions of RabbitMQ user phoenix on vhost /"
fi
topics=$(rmq list_user_topic_permissions --no-table-headers phoenix)
for x in glance nova; do
	if ! grep -qxF "$(printf '/\t%s\t^$\t%s' "$x" "$PHOENIX_RABBIT_TOPICS")" <<<"$topics"; then
		rmq set_topic_permissions -p / phoenix "$x" '^$' "$PHOENIX_RABBIT_TOPICS" >/dev/null
		log "set the topic permissions of RabbitMQ user phoenix on exchange $x"
	fi
done
# The URL Phoenix's controller.notifications.amqp.url_file names.
MODE=0600 put "$STATE/amqp.url" <<EOF
amqp://phoenix:$PHOENIX_RABBIT_PW@127.0.0.1:5672/
EOF
chmod 0600 "$STATE/amqp.url"

# Every service: no AMQP heartbeats under uwsgi (RabbitMQ would drop idle
# connections and lose a server create), legacy policies of Zed.
common_sections() {
	cat <<EOF
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0

[oslo_policy]
enforce_new_defaults = false
enforce_scope = false

[oslo_concurrency]
lock_path = /var/lock/$1
EOF
}
authtoken() {
	cat <<EOF
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:5000/v3
auth_url = http://127.0.0.1:5000/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $SERVICE_PW
region_name = RegionOne
EOF
}
service_creds() { # SECTION USER
	cat <<EOF
[$1]
auth_url = http://127.0.0.1:5000/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $SERVICE_PW
region_name = RegionOne
EOF
}

# --- Keystone ------------------------------------------------------------------------
put /etc/keystone/keystone.conf keystone <<EOF
[DEFAULT]
use_stderr = true

[database]
connection = $DB/keystone

[token]
provider = fernet

$(common_sections keystone)
EOF
once keystone-db keystone-manage db_sync
[ -e /etc/keystone/fernet-keys/0 ] || once keystone-fernet keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
[ -e /etc/keystone/credential-keys/0 ] || once keystone-credential keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
once keystone-bootstrap keystone-manage bootstrap --bootstrap-password "$ADMIN_PW" \
	--bootstrap-admin-url http://127.0.0.1:5000/v3/ --bootstrap-internal-url http://127.0.0.1:5000/v3/ \
	--bootstrap-public-url http://127.0.0.1:5000/v3/ --bootstrap-region-id RegionOne
uwsgi_api keystone 5000 /usr/bin/keystone-wsgi-public 2
wait_for Keystone 60 http_up http://127.0.0.1:5000/v3

export DEVCLOUD_ADMIN_PW=$ADMIN_PW DEVCLOUD_SERVICE_PW=$SERVICE_PW DEVCLOUD_PHOENIX_PW=$PHOENIX_PW
"$PY" "$HERE/bootstrap.py" identity >>"$STATE/log/bootstrap.log" 2>&1 || die "identity setup failed; see $STATE/log/bootstrap.log"

# --- Glance ----------------------------------------------------------------------------
put /etc/glance/glance-api.conf glance <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9292
workers = 2
use_stderr = true
enabled_backends = file:file
# Only for notifications: Glance makes no RPC calls.
transport_url = $RABBIT

[database]
connection = $DB/glance

[glance_store]
default_backend = file

[file]
filesystem_store_datadir = /var/lib/glance/images/

[paste_deploy]
flavor = keystone

# image.create, image.prepare, image.upload, image.activate, image.update,
# image.delete, ... on exchange glance (oslo's control_exchange for Glance),
# routing key notifications.info.
[oslo_messaging_notifications]
driver = messagingv2
topics = notifications

$(authtoken glance)

$(common_sections glance)
EOF
install -d -o glance -g glance /var/lib/glance/images /var/lock/glance
once glance-db glance-manage db_sync
start glance glance-api --config-file /etc/glance/glance-api.conf

# --- Placement ---------------------------------------------------------------------------
put /etc/placement/placement.conf placement <<EOF
[DEFAULT]
use_stderr = true

[placement_database]
connection = $DB/placement

[api]
auth_strategy = keystone

$(authtoken placement)

$(common_sections placement)
EOF
once placement-db placement-manage db sync
uwsgi_api placement 8778 /usr/bin/placement-api 2

# --- Neutron: ML2 with the test mechanism driver, no agents -----------------------------
put /etc/neutron/neutron.conf neutron <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9696
core_plugin = ml2
# The L3 API (routers, floating IPs) without an L3 agent: nothing routes,
# but floating IPs are allocated, associated and moved through the API.
# port_forwarding beside router: with router alone a port list can fail
# with "type object 'Port' has no attribute 'port_forwardings'" (and Nova's
# server list with it).
service_plugins = router,port_forwarding
auth_strategy = keystone
transport_url = $RABBIT
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_workers = 1
rpc_workers = 1
use_stderr = true

[database]
connection = $DB/neutron

# Every test shares project phoenix: room for ~64 servers, the routers'
# ports and a floating IP for each group of one (defaults 500, 10, 50).
[quotas]
quota_port = 1000
quota_router = 20
quota_floatingip = 100

$(authtoken neutron)

$(common_sections neutron)
EOF
put /etc/neutron/plugins/ml2/ml2_conf.ini neutron <<EOF
[ml2]
type_drivers = flat,local
tenant_network_types = local
mechanism_drivers = test
extension_drivers = port_security

[ml2_type_flat]
flat_networks = *

[securitygroup]
firewall_driver = noop
enable_security_group = true
EOF
install -d /var/lock/neutron
once neutron-db neutron-db-manage --config-file /etc/neutron/neutron.conf \
	--config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade head
# The test driver asserts things that do not hold in real use: run with
# assertions off.
start neutron env PYTHONOPTIMIZE=1 neutron-server --config-file /etc/neutron/neutron.conf \
	--config-file /etc/neutron/plugins/ml2/ml2_conf.ini
# Started in this run: warm its API worker before Nova's server lists
# reach it (bootstrap.py network tells why).
if [ "$(stat -c %Y "$STATE/run/neutron.pid")" -ge "$BEGAN" ]; then
	wait_for Neutron 90 http_up http://127.0.0.1:9696/
	"$PY" "$HERE/bootstrap.py" network >>"$STATE/log/bootstrap.log" 2>&1 || die "Neutron fails port lists; see $STATE/log/neutron.log"
fi

# --- Nova with the fake virt driver -------------------------------------------------------
put /etc/nova/nova.conf nova-api nova-conductor nova-scheduler nova-compute <<EOF
[DEFAULT]
transport_url = $RABBIT
my_ip = 127.0.0.1
# The neutron test driver binds ports only for hosts of this name.
host = host-ovs-filter-active
compute_driver = fake.FakeDriver
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
state_path = /var/lib/nova
use_stderr = true
osapi_compute_workers = 4

[api]
auth_strategy = keystone

[api_database]
connection = $DB/nova_api

[database]
connection = $DB/nova

[wsgi]
api_paste_config = /etc/nova/api-paste.ini

[conductor]
workers = 1

[scheduler]
workers = 1
discover_hosts_in_cells_interval = 30

[quota]
instances = 100
cores = 400
ram = 819200

[vnc]
enabled = false

[glance]
region_name = RegionOne

# Notifications in both formats on exchange nova: the versioned ones
# (instance.create.end, ...) with routing key versioned_notifications.info,
# the legacy ones (compute.instance.create.end, ...) with
# notifications.info. nova-compute sends most instance events; nova-api,
# -conductor and -scheduler send some (instance.update on state changes
# wherever the instance is saved, scheduler.select_destinations, ...), so
# all four read this and are restarted when it changes.
[notifications]
notification_format = both
# instance.update on every change of vm_state or task_state.
notify_on_state_change = vm_and_task_state
versioned_notifications_topics = versioned_notifications

[oslo_messaging_notifications]
driver = messagingv2
topics = notifications

$(service_creds placement nova)

$(service_creds neutron nova)

# Volumes: Nova finds Cinder in the catalog (volumev3) and, with a service
# token beside the user's, may detach a volume it attached (Cinder refuses
# a detach without one: 409 ConflictNovaUsingAttachment).
$(service_creds cinder nova)
os_region_name = RegionOne

$(service_creds service_user nova)
send_service_user_token = true

$(authtoken nova)

$(common_sections nova)
EOF
install -d /var/lock/nova /var/lib/nova/instances
once nova-api-db nova-manage api_db sync
once nova-cell0 nova-manage cell_v2 map_cell0
once nova-cell1 sh -c "nova-manage cell_v2 list_cells | grep -q ' cell1 ' || nova-manage cell_v2 create_cell --name=cell1"
once nova-db nova-manage db sync
# nova-api is eventlet-patched: one thread per process or requests can hang.
uwsgi_api nova-api 8774 /usr/bin/nova-api-wsgi 4
start nova-conductor nova-conductor --config-file /etc/nova/nova.conf
start nova-scheduler nova-scheduler --config-file /etc/nova/nova.conf
start nova-compute nova-compute --config-file /etc/nova/nova.conf

# --- Cinder with the fake volume driver ----------------------------------------------------
# No LVM here (no device-mapper): Cinder's own test driver, shipped in
# python3-cinder, keeps volumes and snapshots in the database only; they
# reach "available" in seconds and attach to fake-driver servers.
put /etc/cinder/cinder.conf cinder-api cinder-scheduler cinder-volume <<EOF
[DEFAULT]
transport_url = $RABBIT
auth_strategy = keystone
my_ip = 127.0.0.1
# A fixed name, not the machine's: volumes belong to host devcloud@fake.
host = devcloud
state_path = /var/lib/cinder
api_paste_config = /etc/cinder/api-paste.ini
use_stderr = true
enabled_backends = fake
glance_api_servers = http://127.0.0.1:9292
# The defaults (10 volumes, 10 snapshots, 1000 GiB) are small for tests
# that share one project.
quota_volumes = 200
quota_snapshots = 200
quota_gigabytes = 10000

[database]
connection = $DB/cinder

[fake]
volume_backend_name = fake
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
target_helper = fake

$(service_creds nova cinder)

$(authtoken cinder)
# Trust Nova's calls that carry a service token of an admin (a detach).
service_token_roles = admin
service_token_roles_required = true

$(common_sections cinder)
EOF
install -d /var/lock/cinder /var/lib/cinder
once cinder-db cinder-manage db sync
# cinder-api is eventlet-patched like nova-api: one thread per process.
uwsgi_api cinder-api 8776 /usr/bin/cinder-wsgi 2
start cinder-scheduler cinder-scheduler --config-file /etc/cinder/cinder.conf
start cinder-volume cinder-volume --config-file /etc/cinder/cinder.conf

# --- Octavia with noop drivers ---------------------------------------------------------------
CERTS=$STATE/octavia-certs # beside its passphrase in $STATE/secrets
if [ ! -s "$CERTS/ca.key" ]; then
	install -d -m 0700 "$CERTS"
	# The worker signs certificates even with noop drivers, and insists
	# on an encrypted CA key.
	openssl genrsa -aes256 -passout "pass:$CA_PW" -out "$CERTS/ca.key" 2048 2>/dev/null
	openssl req -x509 -new -key "$CERTS/ca.key" -passin "pass:$CA_PW" -days 3650 \
		-subj "/CN=phoenix-devcloud-octavia-ca" -out "$CERTS/ca.pem" 2>/dev/null
fi
put /etc/octavia/octavia.conf octavia-api octavia-worker <<EOF
[DEFAULT]
transport_url = $RABBIT
use_stderr = true

[api_settings]
bind_host = 127.0.0.1
bind_port = 9876
auth_strategy = keystone
default_provider_driver = amphora
enabled_provider_drivers = amphora:The Octavia Amphora driver (noop drivers behind it).

[database]
connection = $DB/octavia

[controller_worker]
amphora_driver = amphora_noop_driver
compute_driver = compute_noop_driver
network_driver = network_noop_driver
image_driver = image_noop_driver
volume_driver = volume_noop_driver
loadbalancer_topology = SINGLE
amp_flavor_id = devcloud-noop
amp_image_tag = devcloud-noop
amp_boot_network_list = devcloud-noop
client_ca = $CERTS/ca.pem
workers = 1

[task_flow]
jobboard_enabled = False
# The parallel engine runs flows in native threads, and the worker is
# eventlet-patched: once in a while a flow then hangs for good ("greenlet.
# error: cannot switch to a different thread"), leaving its load balancer
# PENDING_CREATE. The serial engine runs each flow in the greenthread that
# took the request.
engine = serial

[certificates]
cert_generator = local_cert_generator
ca_certificate = $CERTS/ca.pem
ca_private_key = $CERTS/ca.key
ca_private_key_passphrase = $CA_PW

[oslo_messaging]
topic = octavia_prov

$(service_creds service_auth octavia)

$(authtoken octavia)

$(common_sections octavia)
EOF
install -d /var/lock/octavia
once octavia-db octavia-db-manage --config-file /etc/octavia/octavia.conf upgrade head
uwsgi_api octavia-api 9876 /usr/bin/octavia-wsgi 2
start octavia-worker octavia-worker --config-file /etc/octavia/octavia.conf

# --- the health responder for the fake servers ------------------------------------------------
start responder "$PY" "$HERE/responder.py" --port "$RESPONDER_PORT"

# --- wait, register the compute host, create the resources tests use --------------------------
wait_for Glance 90 http_up http://127.0.0.1:9292/
wait_for Placement 90 http_up http://127.0.0.1:8778/
wait_for Neutron 90 http_up http://127.0.0.1:9696/
wait_for Nova 120 http_up http://127.0.0.1:8774/
wait_for Octavia 90 http_up http://127.0.0.1:9876/
wait_for Cinder 90 http_up http://127.0.0.1:8776/
wait_for "the health responder" 30 http_up "http://127.0.0.1:$RESPONDER_PORT/_responder/unhealthy"
[ -e "$STATE/done/compute-host" ] ||
	wait_for "nova-compute to register" 180 sh -c "nova-manage cell_v2 discover_hosts >/dev/null 2>&1 && \
		nova-manage cell_v2 list_hosts 2>/dev/null | grep -q host-ovs-filter-active"
touch "$STATE/done/compute-host"

"$PY" "$HERE/bootstrap.py" resources >>"$STATE/log/bootstrap.log" 2>&1 || die "resource setup failed; see $STATE/log/bootstrap.log"
started_at() { stat -c %Y "$STATE/run/$1.pid"; }
"$PY" "$HERE/bootstrap.py" compute "nova-conductor=$(started_at nova-conductor)" \
	"nova-scheduler=$(started_at nova-scheduler)" "nova-compute=$(started_at nova-compute)" \
	>>"$STATE/log/bootstrap.log" 2>&1 || die "Nova's services did not report in; see $STATE/log/nova-*.log"
"$PY" "$HERE/bootstrap.py" volume "cinder-scheduler=$(started_at cinder-scheduler)" \
	"cinder-volume=$(started_at cinder-volume)" \
	>>"$STATE/log/bootstrap.log" 2>&1 || die "Cinder's services did not report in; see $STATE/log/cinder-*.log"

(
	umask 077
	cat >"$STATE/clouds.yaml" <<EOF
# Written by examples/devcloud/up.sh. devcloud is a member of project
# phoenix (what Phoenix and the tests use); devcloud-quota is the same user
# in project phoenix-quota (for a test that fills its quota);
# devcloud-admin is the admin.
clouds:
  devcloud:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: phoenix
      password: "$PHOENIX_PW"
      project_name: phoenix
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
  devcloud-quota:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: phoenix
      password: "$PHOENIX_PW"
      project_name: phoenix-quota
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
  devcloud-admin:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: admin
      password: "$ADMIN_PW"
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
EOF
)
log "cloud is up in $(($(date +%s) - BEGAN))s: export OS_CLIENT_CONFIG_FILE=$STATE/clouds.yaml OS_CLOUD=devcloud"
