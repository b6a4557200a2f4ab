#!/usr/bin/env bash
# The option docs cannot drift: every key of the options table in lib/util/options.c has a row in
# docs/options.md ("| `key` | default | meaning |"), and the doc has no row for a key the code
# lacks. Prints what differs and exits 1; prints one line and exits 0 when they agree.
set -euo pipefail
cd "$(dirname "$0")/../.."
code=$(sed -n 's/^ *{ *"\([a-z_]*\)", *OPT_.*/\1/p' lib/util/options.c | sort)
doc=$(sed -n 's/^| *`\([a-z_]*\)` *|.*/\1/p' docs/options.md | sort)
[ -n "$code" ] || { echo "tests/docs/options.sh: found no keys in lib/util/options.c's table" >&2; exit 1; }
only_code=$(comm -23 <(echo "$code") <(echo "$doc"))
only_doc=$(comm -13 <(echo "$code") <(echo "$doc"))
dups=$(echo "$doc" | uniq -d)
status=0
for k in $only_code; do echo "docs/options.md: no row for option '$k' (lib/util/options.c has it)"; status=1; done
for k in $only_doc; do echo "docs/options.md: row for '$k', which lib/util/options.c does not have"; status=1; done
for k in $dups; do echo "docs/options.md: more than one row for '$k'"; status=1; done
[ $status -eq 0 ] && echo "options doc: $(echo "$code" | wc -l) keys, the same in lib/util/options.c and docs/options.md"
exit $status
