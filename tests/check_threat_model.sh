#!/usr/bin/env bash
# The THREAT MODEL section of envelopefs-format(5) names the tests that prove each claim: every
# name it cites must be a test of this build (a renamed or deleted test makes the page untrue).
# Usage: check_threat_model.sh CTEST BUILD_DIR MAN_PAGE
set -euo pipefail
ctest=$1 build=$2 page=$3
tests=$("$ctest" --test-dir "$build" -N | sed -n 's/.*Test *#[0-9]*: //p' | sed 's/  #.*//')
cited=$(awk '/^\.SH THREAT MODEL/,/^\.SH SEE ALSO/' "$page" |
        grep -oE '[A-Z][A-Za-z0-9]*(/[A-Za-z0-9]+)?\.[A-Z][A-Za-z0-9]+' | sort -u)
[ -n "$cited" ] || { echo "no tests cited in $page"; exit 1; }
missing=0
for t in $cited; do
  if ! grep -qE "^${t}(/|$)" <<<"$tests"; then
    echo "cited in the threat model but not a test: $t"
    missing=1
  fi
done
echo "$(wc -w <<<"$cited") cited tests checked"
exit $missing
