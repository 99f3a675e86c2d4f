#!/usr/bin/env bash
# damage.sh: the data directory fault-injection suite over many seeds.
#
#   ./scripts/damage.sh 50        seeds 1..50
#   ./scripts/damage.sh 100-149   seeds 100..149
#
# Each seed runs TestDamageSeeds (cmd/tidemark/damage_test.go) once: the
# real binary is loaded, stopped (SIGKILL or SIGTERM), one file of one
# store (log, state, stream: WAL, sstable, blob file, MANIFEST, OPTIONS,
# marker, or the whole store) is truncated, garbled or deleted at a random
# point, and serve is started again. The seed passes when serve refuses
# with a clear message (non-zero exit, no stack trace, no secret) or
# delivers every event acknowledged after the start exactly once, and
# events acknowledged before the damage that the lake lacks are reported
# (by the server or the audit). Prints one line per seed and a summary;
# exits 1 if any seed failed. The full log is in $OUT (default
# ./damage-out.log).
set -euo pipefail
cd "$(dirname "$0")/.."
spec=${1:?usage: damage.sh COUNT | FROM-TO}
if [[ $spec == *-* ]]; then from=${spec%-*}; to=${spec#*-}; else from=1; to=$spec; fi
out=${OUT:-damage-out.log}
seeds=$(seq -s, "$from" "$to")
export CGO_ENABLED=0
# One go test run for every seed (the binaries are built once); each seed
# is a subtest that fails on its own.
TIDEMARK_DAMAGE_SEEDS=$seeds go test ./cmd/tidemark -run '^TestDamageSeeds$' -count=1 -v -timeout 0 >"$out" 2>&1 || true
refused=0 recovered=0 failed=0
for ((s = from; s <= to; s++)); do
	if grep -qE -- "^    --- PASS: TestDamageSeeds/$s " "$out"; then
		line=$(grep -E "DAMAGE seed=$s " "$out" | tail -1 | sed 's/^ *damage_test.go:[0-9]*: //')
		case $line in
		*"-> refused"*) refused=$((refused + 1)) ;;
		*) recovered=$((recovered + 1)) ;;
		esac
		echo "ok   $line"
	else
		failed=$((failed + 1))
		echo "FAIL seed=$s: $(grep -E "damage_test.go:[0-9]+: seed=$s " "$out" | head -1 | sed 's/^ *//' | cut -c1-400)"
	fi
done
echo "seeds $from-$to: $refused refused to start, $recovered recovered, $failed failed (full output: $out)"
[[ $failed == 0 ]]
