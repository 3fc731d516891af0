#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, installs the extension,
# then runs as the postgres user (initdb refuses root):
#   pg_regress suite (make installcheck) on a temporary instance,
#   C unit tests and the Raft simulator (make unitcheck),
#   TAP tests: crash/restart, randomized comparison with heap, concurrency.
# Ends with one line "N passed, M failed" counting the suites.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH=/usr/lib/postgresql/15/bin:$PATH

bash scripts/install-deps.sh || exit 1

as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- env PATH="$PATH" "$@"
	else
		"$@"
	fi
}

if [ "$(id -u)" -eq 0 ]; then
	make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null || exit 1
	make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null || exit 1
	chown -R postgres "$top"
else
	make -s || exit 1
	sudo make -s install || exit 1
fi

passed=0
failed=0
failed_names=""
run_suite() {
	local name=$1
	shift
	echo "=== $name"
	if as_postgres "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failed_names="$failed_names $name"
	fi
}

run_suite regress make -s installcheck PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
if [ -f regression.diffs ]; then
	head -200 regression.diffs
fi
run_suite unit make -s unitcheck
run_suite tap make -s tapcheck PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

echo
[ -n "$failed_names" ] && echo "failed suites:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
