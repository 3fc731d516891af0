#!/bin/sh
# run_check.sh: the "make check" driver of test/sim.
#
#   run_check.sh BUILD_DIR FIXED_SEEDS FIXED_STEPS TEETH_SEEDS "BUG1 BUG2 ..."
#
# Runs the core unit tests, the scripted scenarios, the fixed seed set on 3
# and 5 nodes, and the teeth tests (each deliberately broken engine must be
# caught by the seed set and by the scenarios).  Sums the "N passed, M failed"
# lines of every part and ends with the total in the same form.  Exits
# non-zero if anything failed.
set -u

B=$1
FIXED_SEEDS=$2
FIXED_STEPS=$3
TEETH_SEEDS=$4
BUGS=$5

total_passed=0
total_failed=0
start=$(date +%s)

# run one part: its output is shown, its last line is added to the totals
part() {
	name=$1
	shift
	echo "== $name"
	out=$("$@" 2>&1)
	status=$?
	printf '%s\n' "$out" | grep -v '^ok ' | tail -n 20
	last=$(printf '%s\n' "$out" | tail -n 1)
	p=$(printf '%s\n' "$last" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1/p')
	f=$(printf '%s\n' "$last" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\2/p')
	if [ -z "$p" ] || [ -z "$f" ]; then
		echo "   $name did not report a result (exit $status)"
		p=0
		f=1
	elif [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "   $name exited with $status"
		f=1
	fi
	total_passed=$((total_passed + p))
	total_failed=$((total_failed + f))
}

# a broken engine must make the given command fail: one test case
teeth() {
	name=$1
	shift
	echo "== teeth: $name"
	if out=$("$@" 2>&1); then
		printf '%s\n' "$out" | tail -n 3
		echo "   FAIL: the broken build passed; the tests have no teeth"
		total_failed=$((total_failed + 1))
	else
		printf '%s\n' "$out" | grep -m 1 '^FAIL' || true
		echo "   ok: the broken build was caught"
		total_passed=$((total_passed + 1))
	fi
}

part "core unit tests" "$B/unit_core"
part "scenarios" "$B/scenarios"
part "fixed seeds, 3 and 5 nodes" "$B/simrun" --first=1 --count="$FIXED_SEEDS" --nodes=35 --steps="$FIXED_STEPS"
for bug in $BUGS; do
	part "teeth: seeds vs RAFT_BUG_$bug" "$B/simrun_bug_$bug" --first=1 --count="$TEETH_SEEDS" --nodes=35 --steps="$FIXED_STEPS" --expect-failure
	teeth "scenarios vs RAFT_BUG_$bug" "$B/scenarios_bug_$bug"
done

end=$(date +%s)
echo "== done in $((end - start)) s"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
