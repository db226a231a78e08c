#!/bin/sh
# /docker-entrypoint.sh CMD... - entrypoint of localhost/devicefleet/mosquitto, as upstream's:
# started as root it hands /mosquitto/data and /mosquitto/log to the mosquitto user (1883;
# mosquitto itself drops to it); then runs CMD.
set -e
if [ "$(id -u)" = 0 ]; then
	chown -R mosquitto:mosquitto /mosquitto/data /mosquitto/log 2>/dev/null || true
fi
exec "$@"
