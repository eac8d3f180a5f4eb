#!/usr/bin/env bash
# Long property-test ("fuzz") run of the stable proptest suites and of the change-file
# driver (client/tests/change_file_props.rs, same knobs): the same targets as `cargo test`, with
# many more cases, each suite bounded in time.
#
#   scripts/fuzz.sh                 # 100000 parser cases, 2000 network cases, ≤ 2 min per property
#   CASES=1000000 SECS=1800 scripts/fuzz.sh
#
# PROFILE=dev skips the release build (slower cases, quicker start). SUITES="zone-server props"
# runs only the listed suites ("package test", space-separated pairs).
# CASES: cases per pure-parser property (PROPTEST_CASES). NET_CASES: cases per property that goes
# through a server over HTTP/2 and HTTP/3 (PROPTEST_NET_CASES). SECS: time budget per property
# (PROPTEST_MAX_SECS): a property stops at its first case past it and reports how many ran; a suite
# (two properties at a time) is killed at 8 × SECS + 60 s. Prints the cases run per property and
# every failure; exits non-zero on any.
set -u
cd "$(dirname "$0")/.."

CASES=${CASES:-100000}
NET_CASES=${NET_CASES:-2000}
SECS=${SECS:-120}
PROFILE=${PROFILE:-release}
if [[ -n "${SUITES:-}" ]]; then
    read -r -a words <<<"$SUITES"
    SUITES=()
    for ((i = 0; i + 1 < ${#words[@]}; i += 2)); do SUITES+=("${words[i]} ${words[i + 1]}"); done
else
    SUITES=("grpc-h3 lib props" "grpc-h3 it props::" "zone-server props" "zone-client change_file_props")
fi
LOG_DIR=${LOG_DIR:-target/fuzz}
mkdir -p "$LOG_DIR"

failed=0
for suite in "${SUITES[@]}"; do
    # "package test [filter]": `lib` is the crate's unit tests; the filter picks the tests run.
    read -r package test filter <<<"$suite"
    # Build first (outside the time budget), then run the test binary itself so `timeout` stops it.
    build_log="$LOG_DIR/$package-$test.build.log"
    if [[ $test == lib ]]; then
        target=(--lib) kind='"kind":["lib"]' name="\"name\":\"${package//-/_}\""
    else
        target=(--test "$test") kind='"kind":["test"]' name="\"name\":\"$test\""
    fi
    binary=$(cargo test --profile "$PROFILE" -p "$package" "${target[@]}" --no-run --message-format=json 2>"$build_log" |
        grep -F "$kind" | grep -F "$name" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    if [[ -z "$binary" ]]; then
        echo "FAIL $package/$test: does not build ($build_log):"
        grep -E '^error' -A 5 "$build_log" | head -n 20 | sed 's/^/   /'
        failed=1
        continue
    fi
    log="$LOG_DIR/$package-$test.log"
    echo "== $package/$test: CASES=$CASES NET_CASES=$NET_CASES SECS=$SECS (log: $log)"
    start=$(date +%s)
    timeout --kill-after=10 "$((8 * SECS + 60))" \
        env PROPTEST_CASES="$CASES" PROPTEST_NET_CASES="$NET_CASES" PROPTEST_MAX_SECS="$SECS" \
        RUST_BACKTRACE=0 "$binary" $filter --nocapture --test-threads=2 >"$log" 2>&1
    rc=$?
    echo "   $(($(date +%s) - start)) s"
    grep -E '^PROPS ' "$log" | sed 's/^/   /'
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "FAIL $package/$test: killed after $((8 * SECS + 60)) s"
        failed=1
    elif [[ $rc -ne 0 ]]; then
        echo "FAIL $package/$test (exit $rc):"
        grep -E 'FAILED|minimal failing input' -A 12 "$log" | head -n 60 | sed 's/^/   /'
        failed=1
    else
        echo "   ok: $(grep -E '^test result' "$log")"
    fi
done
exit $failed
