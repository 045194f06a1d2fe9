#!/usr/bin/env bash
# Drives the built `shmap` tool through every subcommand, every exit code, the
# help texts and the error paths. Registered by tests/tooling.cmake (label cli).
# Usage: tests/cli_test.sh PATH-TO-shmap
set -uo pipefail

if [[ $# -ne 1 || ! -x $1 ]]; then
  echo "usage: $0 PATH-TO-shmap" >&2
  exit 2
fi
tool=$1
export LC_ALL=C

# Names unique to this run, so parallel runs and leftovers never collide.
tag="shmap-cli-test-$$-$RANDOM"
map="/$tag"
tiny="/$tag-tiny"
small_arena="/$tag-arena"
absent="/$tag-absent"
tmp=$(mktemp -d)
filemap="$tmp/filemap"

cleanup() {
  for n in "$map" "$tiny" "$small_arena" "$absent" "$filemap"; do
    "$tool" rm --force "$n" >/dev/null 2>&1
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

checks=0
failures=0
out="$tmp/stdout"
err="$tmp/stderr"

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# shmap EXIT ARGS...: runs the tool with stdout/stderr captured, checks the exit code.
shmap() {
  local want=$1
  shift
  "$tool" "$@" >"$out" 2>"$err"
  local got=$?
  checks=$((checks + 1))
  last="shmap $*"
  if [[ $got -ne $want ]]; then
    fail "$last: exit $got, want $want; stderr: $(head -c 400 "$err")"
  fi
}

# shmap_in EXIT INPUT-FILE ARGS...: like shmap, with standard input from a file.
shmap_in() {
  local want=$1 input=$2
  shift 2
  "$tool" "$@" <"$input" >"$out" 2>"$err"
  local got=$?
  checks=$((checks + 1))
  last="shmap $* < $input"
  if [[ $got -ne $want ]]; then
    fail "$last: exit $got, want $want; stderr: $(head -c 400 "$err")"
  fi
}

stderr_has() {
  grep -qF -- "$1" "$err" || fail "$last: stderr lacks '$1'; it was: $(head -c 400 "$err")"
}
stdout_has() {
  grep -qF -- "$1" "$out" || fail "$last: stdout lacks '$1'"
}
stdout_is() {  # exact bytes, no newline added
  if [[ $(od -An -c "$out") != $(printf '%s' "$1" | od -An -c) ]]; then
    fail "$last: stdout is '$(head -c 200 "$out")', want '$1'"
  fi
}
stdout_matches_file() {
  cmp -s "$out" "$1" || fail "$last: stdout differs from $1"
}
stderr_empty() {
  [[ ! -s $err ]] || fail "$last: unexpected stderr: $(head -c 400 "$err")"
}
segment_absent() {  # NAME: info must say "not found"
  "$tool" info "$1" >/dev/null 2>&1
  [[ $? -eq 3 ]] || fail "segment $1 exists but should not"
}

# ---------------------------------------------------------------- help, version
shmap 2
stderr_has "Usage: shmap COMMAND"
shmap 0 --help
for word in create info put get del dump fsck rm "Exit codes" "4  map full" "5  fsck"; do stdout_has "$word"; done
shmap 0 -h
stdout_has "Usage: shmap COMMAND"
shmap 0 help
stdout_has "Exit codes"
shmap 0 --version
grep -qE '^shmap [0-9]+\.[0-9]+\.[0-9]+$' "$out" || fail "--version printed '$(cat "$out")'"
shmap 2 frobnicate
stderr_has "unknown command 'frobnicate'"
shmap 2 --frobnicate
stderr_has "unknown option --frobnicate"
shmap 2 help frobnicate
for cmd in create info put get del dump rm; do
  shmap 0 "$cmd" --help
  stdout_has "Usage: shmap $cmd"
  stdout_has "Exit codes"
  shmap 0 "$cmd" -h
  stdout_has "Usage: shmap $cmd"
  shmap 0 help "$cmd"
  stdout_has "Usage: shmap $cmd"
done
# --help wins over everything else on the line and does nothing.
shmap 0 create "$map" --capacity 10 --help
segment_absent "$map"

# ---------------------------------------------------------------- usage errors
shmap 2 create
stderr_has "missing arguments"
stderr_has "Try 'shmap create --help'"
shmap 2 create "$map" extra
stderr_has "too many arguments"
shmap 2 create "$map" --capacity 12abc
stderr_has "invalid --capacity '12abc'"
shmap 2 create "$map" --capacity=12abc
stderr_has "invalid --capacity '12abc'"
shmap 2 create "$map" --capacity ""
shmap 2 create "$map" --capacity -5
shmap 2 create "$map" --capacity " 5"
shmap 2 create "$map" --capacity +5
shmap 2 create "$map" --capacity 0x
shmap 2 create "$map" --capacity 99999999999999999999999
stderr_has "too large"
shmap 2 create "$map" --capacity
stderr_has "needs a value"
shmap 2 create "$map" --capacity 10 --capacity 20
stderr_has "given twice"
shmap 2 create "$map" --arena-bytes 1X
shmap 2 create "$map" --arena-bytes M
shmap 2 create "$map" --arena-bytes 1.5M
shmap 2 create "$map" --arena-bytes 99999999999T
stderr_has "too large"
shmap 2 create "$map" --mode 0999
stderr_has "not an octal number"
shmap 2 create "$map" --mode 17777
shmap 2 create "$map" --seed 0xZZ
shmap 2 create "$map" --seed 12e3
shmap 2 create "$map" --bogus
stderr_has "unknown option --bogus"
shmap 2 create "$map" -x
shmap 2 put "$map" key
stderr_has "exactly one of them"
shmap 2 put "$map" key value --value-file /dev/null
shmap 2 put "$map" a b c d
shmap 2 get "$map"
shmap 2 del "$map" a b
shmap 2 dump "$map" --hex=yes
stderr_has "takes no value"
shmap 2 rm
# Nothing above may have created the segment.
segment_absent "$map"

# ---------------------------------------------------------------- missing segment
for args in "info $absent" "get $absent k" "put $absent k v" "del $absent k" "dump $absent" "rm $absent"; do
  # shellcheck disable=SC2086  # word splitting intended: the names contain no spaces
  shmap 3 $args
  stderr_has "$absent"
  grep -qiE "not (found|exist)|does not exist|no such" "$err" || fail "$last: stderr does not say the segment is missing"
done
# Well-formed numbers the library refuses are runtime errors, not usage errors.
shmap 3 create "$absent" --capacity 0
stderr_has "$absent"
segment_absent "$absent"
shmap 0 rm --force "$absent"
shmap 0 rm -f "$absent"

# ---------------------------------------------------------------- create, create twice, info
shmap 0 create "$map" --capacity 1000 --arena-bytes 4M --mode 0640 --seed 0x1234
stderr_empty
[[ $(stat -c %a "/dev/shm/$tag") == 640 ]] || fail "create --mode 0640 gave mode $(stat -c %a "/dev/shm/$tag")"
shmap 3 create "$map"
stderr_has "$map"
stderr_has "exists"
shmap 0 info "$map"
stdout_has "name:"
stdout_has "$map"
stdout_has "1000 keys"
stdout_has "0x0000000000001234"
stdout_has "0640"
stdout_has "2048 (at least 2048)"
for word in "layout version:" "index slots:" "live keys:" "deleted slots:" "load factor:" "arena carved:" "size classes:" \
            "max bytes:" "table generation:" "migration:" "migrations:" "reclaimed slots:" "retired tables:" "index runs:"; do
  stdout_has "$word"
done
grep -qE '^live keys: +0$' "$out" || fail "info of an empty map: live keys not 0"

# ---------------------------------------------------------------- put, get, del
shmap 0 put "$map" color blue
stderr_empty
shmap 0 get "$map" color
stdout_is "blue"
shmap 0 put "$map" color green
shmap 0 get "$map" color
stdout_is "green"
# On a terminal, and only there, get ends the value with a newline.
if command -v script >/dev/null 2>&1; then
  script -qec "$(printf '%q ' "$tool" get "$map" color)" /dev/null >"$tmp/tty" 2>&1
  checks=$((checks + 1))
  [[ $(od -An -c "$tmp/tty" | tr -s ' ') == " g r e e n \r \n" ]] ||
    fail "get on a terminal printed: $(od -An -c "$tmp/tty")"
fi
shmap 1 put "$map" color red --if-absent
stderr_has "exists"
stderr_has "'color'"
stderr_has "$map"
shmap 0 get "$map" color
stdout_is "green"
shmap 0 put "$map" --if-absent shape round
shmap 0 get "$map" shape
stdout_is "round"
shmap 1 get "$map" nosuchkey
stderr_has "not found"
stderr_has "'nosuchkey'"
stderr_has "$map"
shmap 0 put "$map" -- -dash "-value"
shmap 0 get "$map" -- -dash
stdout_is "-value"
shmap 2 get "$map" -dash
shmap 0 put "$map" empty ""
shmap 0 get "$map" empty
stdout_is ""
shmap 0 put "$map" "key with spaces" "value with spaces"
shmap 0 get "$map" "key with spaces"
stdout_is "value with spaces"
shmap 0 del "$map" shape
shmap 1 del "$map" shape
stderr_has "not found"
shmap 1 get "$map" shape
shmap 0 info "$map"
grep -qE '^live keys: +4$' "$out" || fail "info: live keys is not 4: $(grep 'live keys' "$out")"
grep -qE '^deleted slots: +[1-9]' "$out" || fail "info: no deleted slot after del: $(grep 'deleted' "$out")"
grep -qE '^ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+$' "$out" || fail "info: no size-class row"

# ---------------------------------------------------------------- binary values
printf 'nul\000one\001nl\ntab\tbs\\ff\377end' >"$tmp/binary"
shmap 0 put "$map" bin --value-file "$tmp/binary"
shmap 0 get "$map" bin
stdout_matches_file "$tmp/binary"
shmap_in 0 "$tmp/binary" put "$map" bin-stdin --value-file -
shmap 0 get "$map" bin-stdin
stdout_matches_file "$tmp/binary"
head -c 200000 /dev/urandom >"$tmp/random"
shmap 0 put "$map" random --value-file="$tmp/random"
shmap 0 get "$map" random
stdout_matches_file "$tmp/random"
: >"$tmp/empty"
shmap 0 put "$map" empty-file --value-file "$tmp/empty"
shmap 0 get "$map" empty-file
stdout_is ""
shmap 3 put "$map" k --value-file "$tmp/does-not-exist"
stderr_has "shmap: put $map: cannot open value file '$tmp/does-not-exist'"
shmap 3 put "$map" k --value-file "$tmp"
stderr_has "cannot read value file"

# ---------------------------------------------------------------- dump
shmap 0 create "$filemap" --capacity 16
shmap 0 dump "$filemap"
stdout_is ""
shmap 0 put "$filemap" a 1
shmap 0 put "$filemap" "sp ace" $'x\ty'
# shellcheck disable=SC1003  # the backslash is data
printf '\000\377\\' >"$tmp/bin3"
shmap 0 put "$filemap" bin --value-file "$tmp/bin3"
shmap 0 put "$filemap" $'k\n' ""
shmap 0 dump "$filemap"
sort "$out" >"$tmp/dump.sorted"
# shellcheck disable=SC1003  # the backslashes are data
printf '%s\n' 'a	1' 'bin	\x00\xff\\' 'k\x0a	' 'sp ace	x\x09y' | sort >"$tmp/dump.want"
cmp -s "$tmp/dump.sorted" "$tmp/dump.want" || fail "dump: got $(od -c "$tmp/dump.sorted")"
shmap 0 dump "$filemap" --hex
sort "$out" >"$tmp/dump.sorted"
printf '%s\n' '61	31' '62696e	00ff5c' '6b0a	' '737020616365	780979' | sort >"$tmp/dump.want"
cmp -s "$tmp/dump.sorted" "$tmp/dump.want" || fail "dump --hex: got $(cat "$tmp/dump.sorted")"
shmap 0 dump "$map"
[[ $(wc -l <"$out") -eq 8 ]] || fail "dump of the first map has $(wc -l <"$out") lines, want 8"

# ---------------------------------------------------------------- output errors
if [[ -w /dev/full ]]; then
  "$tool" get "$map" color >/dev/full 2>"$err"
  rc=$?
  checks=$((checks + 1))
  last="shmap get >/dev/full"
  [[ $rc -eq 3 ]] || fail "$last: exit $rc, want 3"
  stderr_has "writing to standard output"
fi

# ---------------------------------------------------------------- full map, too long (exit 4)
# A map of capacity 2 (a 16-slot table) grows as keys come.
shmap 0 create "$tiny" --capacity 2
for i in $(seq 1 60); do shmap 0 put "$tiny" "key$i" "v$i"; done
shmap 0 get "$tiny" key60
stdout_is "v60"
shmap 0 info "$tiny"
grep -qE '^index slots: +(64|128|256) ' "$out" || fail "a map of capacity 2 holding 60 keys did not grow: $(grep 'index slots' "$out")"
grep -qE '^table generation: +[1-9]' "$out" || fail "info shows no migration after growth"
shmap 0 put "$tiny" key1 replaced
shmap 0 get "$tiny" key1
stdout_is "replaced"
shmap 4 put "$map" "$(head -c 4096 /dev/zero | tr '\0' k)" v
stderr_has "key too long"
shmap 0 put "$map" "$(head -c 4095 /dev/zero | tr '\0' k)" v
head -c 1048576 /dev/zero >"$tmp/too-big"
shmap 4 put "$map" big --value-file "$tmp/too-big"
stderr_has "value too long"
shmap_in 4 /dev/zero put "$map" endless --value-file -
stderr_has "value too long"
shmap 1 get "$map" big

shmap 0 create "$small_arena" --capacity 1000 --arena-bytes 1M --max-bytes 4M
head -c 100000 /dev/urandom >"$tmp/100k"
stored=0
rc=0
for i in $(seq 1 100); do
  "$tool" put "$small_arena" "blob$i" --value-file "$tmp/100k" >"$out" 2>"$err" || { rc=$?; break; }
  stored=$i
done
checks=$((checks + 1))
last="shmap put (arena full)"
[[ $rc -eq 4 ]] || fail "$last: exit $rc after $stored values of 100 KB in a 4 MiB segment, want 4"
stderr_has "full_arena"
shmap 0 get "$small_arena" blob1
stdout_matches_file "$tmp/100k"
shmap 0 put "$small_arena" small value

# ---------------------------------------------------------------- fsck
shmap 0 fsck "$map"
stdout_has "leaked           0 bytes"
shmap 0 create "$tmp/fsckme" --capacity 16
for k in a b c d e; do shmap 0 put "$tmp/fsckme" "$k" "value-$k"; done
shmap 0 fsck "$tmp/fsckme"
stdout_has "live keys        5"
# Overwrite the whole first index table (16 slots at file offset 1069248: the
# 16 KiB header, the 1 MiB registry of 1024 one-KiB entries, then the arena,
# whose first run starts at its offset 4096 with a 192-byte table header;
# core/layout.hpp) with 0xff: every slot word then is frozen, names a record
# outside the arena, in a table that is not being migrated.
head -c 128 /dev/zero | tr '\0' '\377' | dd of="$tmp/fsckme" bs=1 seek=1069248 conv=notrunc status=none
shmap 5 fsck "$tmp/fsckme"
stdout_has "violation: table 0, slot 0: frozen, but the table is not being migrated"
stderr_has "violation(s)"
shmap 0 rm "$tmp/fsckme"
shmap 3 fsck "$absent"

# ---------------------------------------------------------------- rm
printf 'this is not a shmap segment, only some text long enough to hold a header?' >"$tmp/not-a-map"
shmap 3 info "$tmp/not-a-map"
stderr_has "$tmp/not-a-map"
shmap 3 rm "$tmp/not-a-map"
[[ -e $tmp/not-a-map ]] || fail "rm removed a file that is not a shmap segment"
shmap 3 rm --force "$tmp/not-a-map"
stderr_has "not a shmap segment"
[[ -e $tmp/not-a-map ]] || fail "rm --force removed a file that is not a shmap segment"
# A damaged header (magic intact): rm refuses, rm --force removes.
shmap 0 create "$tmp/damaged" --capacity 16
printf '\377\377\377\377' | dd of="$tmp/damaged" bs=1 seek=8 conv=notrunc status=none
shmap 3 info "$tmp/damaged"
shmap 3 rm "$tmp/damaged"
[[ -e $tmp/damaged ]] || fail "rm removed a segment whose validation failed"
shmap 0 rm --force "$tmp/damaged"
[[ ! -e $tmp/damaged ]] || fail "rm --force left the damaged segment"
shmap 0 rm "$filemap"
[[ ! -e $filemap ]] || fail "rm left the file-backed map"
shmap 0 rm "$map"
stderr_empty
segment_absent "$map"
shmap 3 rm "$map"
stderr_has "$map"
shmap 0 rm -f "$map"
shmap 0 rm "$tiny"
shmap 0 rm "$small_arena"

echo "cli_test: $checks checks, $failures failures"
[[ $failures -eq 0 ]]
