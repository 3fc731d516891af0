#!/usr/bin/env bash
# Installs what building and testing chronicle_raft needs on Debian 12.
# Runs apt-get update once, and only when a package is missing.
set -euo pipefail

PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-contrib libprotobuf-c-dev protobuf-c-compiler libipc-run-perl libpq-dev make gcc pkg-config"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages:$missing; run this script as root (or with sudo)" >&2
		exit 1
	fi
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq $missing >/dev/null
fi
# Debian's postgresql-15 package creates and starts a cluster on 5432; it is
# not ours to use or stop, and our servers use their own ports.
echo "dependencies present"
