#!/usr/bin/env bash
# The layering check (docs/design.md, "Layout"): lib/ is in folders by layer, and a layer uses
# only the layers below it, through each one's single header, as snmalloc enforces its own.
#   os < util < heap < lens < objects < top (lib/*.c, lib/*.h: override.c, init.c, checked_copy.c)
# It fails when
#   - a file includes a header of a layer above its own (an upward include);
#   - a file includes a header of a lower layer other than that layer's one header (lib/L/L.h);
#   - an object file refers to a name defined in a layer above its own (an upward call, caught
#     by nm even when no header was included to make it);
#   - a name crosses layers without being declared in its layer's headers, or a source file
#     declares another file's name itself (an `extern` or a prototype of its own).
# Usage: tests/layers/check.sh OBJDIR   (OBJDIR: the build's obj/, as make check passes it)
set -u
cd "$(dirname "$0")/../.."
objdir=${1:?usage: check.sh OBJDIR}
layers=(os util heap lens objects top)
rank() { local i; for i in "${!layers[@]}"; do [[ ${layers[$i]} == "$1" ]] && { echo "$i"; return; }; done; echo 99; }
layer_of() {   # lib/heap/pool.c -> heap; lib/init.c -> top
    local rel=${1#lib/}
    [[ $rel == */* ]] && echo "${rel%%/*}" || echo top
}
fail=0
err() { echo "layers: $*"; fail=1; }

# ---- includes ----
nfiles=0
while IFS= read -r f; do
    nfiles=$((nfiles + 1))
    L=$(layer_of "$f")
    while IFS=: read -r line inc; do
        inc=${inc#*\"}; inc=${inc%%\"*}
        if [[ -f lib/$inc ]]; then target=lib/$inc
        elif [[ -f $(dirname "$f")/$inc ]]; then target=$(dirname "$f")/$inc
        elif [[ -f include/$inc ]]; then continue            # the public headers: any layer
        else err "$f:$line: includes \"$inc\", which is not in lib/ or include/"; continue
        fi
        target=$(realpath --relative-to=. "$target")
        T=$(layer_of "$target")
        [[ $T == "$L" ]] && continue
        if (( $(rank "$T") > $(rank "$L") )); then
            err "$f:$line: includes $target: layer $L must not include layer $T, which is above it"
        elif [[ $T != top && $target != "lib/$T/$T.h" ]]; then
            err "$f:$line: includes $target: layer $L may include layer $T only through lib/$T/$T.h"
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
done < <(find lib -name '*.[ch]' | sort)

# ---- names, from the object files ----
declare -A def                      # name -> the source file that defines it
objs=
for c in $(find lib -name '*.c' | sort); do
    o=$objdir/${c#lib/}; o=${o%.c}.o
    [[ -f $o ]] || { echo "layers: no object file $o for $c: build first"; exit 2; }
    objs+=" $o"
done
for o in $objs; do
    src=lib/${o#"$objdir"/}; src=${src%.o}.c
    # checked_copy.c's names are libc's (memcpy & co., interposed): every layer may call them.
    [[ $src == lib/checked_copy.c ]] && continue
    while read -r _ _ name; do def[$name]=$src; done < <(nm --defined-only -g "$o")
done
nrefs=0
for o in $objs; do
    src=lib/${o#"$objdir"/}; src=${src%.o}.c
    L=$(layer_of "$src")
    while read -r name; do
        d=${def[$name]:-}
        [[ -z $d || $d == "$src" ]] && continue
        D=$(layer_of "$d")
        [[ $D == "$L" ]] && continue             # within a layer, its own headers suffice
        nrefs=$((nrefs + 1))
        if (( $(rank "$D") > $(rank "$L") )); then
            err "$src uses $name, defined in $d: layer $L must not call up into layer $D"
            continue
        fi
        # Declared once, in a header of the defining file's folder (top: lib/*.h)...
        hdrs=$([[ $D == top ]] && ls lib/*.h || ls lib/"$D"/*.h)
        grep -qw -- "$name" $hdrs ||
            err "$src uses $name, defined in $d, but no header of layer $D declares it"
        # ...and never again by the user itself.
        while IFS= read -r hit; do err "$src:${hit%%:*}: declares $name itself; include its header"; done < <(
            grep -nE "^[[:space:]]*extern[^(]*\\b$name\\b|^[A-Za-z_][^={]*\\b$name[[:space:]]*\\([^)]*\\)[^{]*;[[:space:]]*(/\\*.*)?$" "$src")
    done < <(nm -u "$o" | awk '{print $2}')
done
while IFS= read -r hit; do
    err "${hit%%:*}:$(cut -d: -f2 <<<"$hit"): an extern in a source file; declare it in a header"
done < <(grep -nE '^[[:space:]]*extern[[:space:]]' $(find lib -name '*.c') | grep -v '"C"')
if (( fail )); then exit 1; fi
echo "layers: $nfiles files in ${#layers[@]} layers, $nrefs names used across layers: every include and every call goes down"
