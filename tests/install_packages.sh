#!/usr/bin/env bash
# scripts/install_packages.sh against stand-ins for dpkg, apt-get, sudo, id, node, npm and python3
# (the only commands on PATH): it installs exactly what is missing, through sudo when not root, changes
# nothing when all is there, and says clearly what to do when it cannot install.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
script=$PWD/scripts/install_packages.sh

# A PATH of stand-ins. INSTALLED: the packages dpkg knows; PY_MODULES: those python3 imports;
# UID_IS: what id -u prints; every apt-get and sudo call is logged to $tmp/calls; APT_FAILS=1
# makes apt-get install fail.
stand_ins() {  # DIR, then the stand-ins to leave out
    local dir=$1; shift
    rm -rf "$dir"; mkdir -p "$dir"
    ln -s "$(command -v env)" "$dir/env"
    cat >"$dir/dpkg" <<'SH'
#!/bin/bash
[ "$1" = -s ] && [[ " $INSTALLED " == *" $2 "* ]]
SH
    cat >"$dir/apt-get" <<SH
#!/bin/bash
echo "apt-get \$*" >>"$tmp/calls"
[ "\${APT_FAILS:-0}" = 1 ] && [ "\$1" = install ] && exit 100
exit 0
SH
    cat >"$dir/sudo" <<SH
#!/bin/bash
echo "sudo \$1" >>"$tmp/calls"
exec "\$@"
SH
    printf '#!/bin/bash\necho "$UID_IS"\n' >"$dir/id"
    printf '#!/bin/bash\nexit 0\n' >"$dir/node"
    printf '#!/bin/bash\nexit 0\n' >"$dir/npm"
    # python3 -c "import X" succeeds for the X in PY_MODULES
    printf '#!/bin/bash\n[[ " $PY_MODULES " == *" ${2#import } "* ]]\n' >"$dir/python3"
    chmod +x "$dir"/*
    local left_out
    for left_out in "$@"; do rm -f "$dir/$left_out"; done
}

# run NAME GROUP: the script with PATH=$bin, its output in $tmp/out, its calls in $tmp/calls.
run() {
    : >"$tmp/calls"
    (unset PYTHON; PATH=$bin /bin/bash "$script" "$1") >"$tmp/out" 2>&1  # PYTHON: the stand-in python3
}
everything="build-essential libarchive-dev libcurl4-openssl-dev libzstd-dev liblzma-dev zlib1g-dev
    nlohmann-json3-dev libopenmpi-dev openmpi-bin python3-matplotlib libgtest-dev python3-torch python3-numpy
    procps clang libclang-rt-dev"
everything=$(echo $everything)
export UID_IS=0
bin=$tmp/bin; stand_ins "$bin"

INSTALLED=$everything run sanitizers
[ $? -eq 0 ] && [ ! -s "$tmp/out" ] && [ ! -s "$tmp/calls" ] || fail "all installed: it did something"

INSTALLED=${everything/libgtest-dev /} run test
status=$?
grep -qx "apt-get install -y -qq --no-install-recommends libgtest-dev" "$tmp/calls" &&
    grep -qx "apt-get update -qq" "$tmp/calls" && [ $status -eq 0 ] ||
    { fail "one missing: not installed exactly"; cat "$tmp/calls"; }

# build's group does not ask for test's packages
INSTALLED="${everything% libgtest-dev*}" run build
[ $? -eq 0 ] && [ ! -s "$tmp/calls" ] || fail "build asked for more than build's packages"
INSTALLED="${everything% libgtest-dev*}" run test
grep -q "install .* libgtest-dev python3-torch python3-numpy procps$" "$tmp/calls" || fail "test's packages not asked for"

UID_IS=1000 INSTALLED=${everything/clang /} run sanitizers
[ $? -eq 0 ] && grep -qx "sudo apt-get" "$tmp/calls" && grep -q "install .* clang$" "$tmp/calls" ||
    { fail "not root: apt-get not through sudo"; cat "$tmp/calls" "$tmp/out"; }

# Python modules installed with pip count as their python3-* packages
PY_MODULES="torch numpy" INSTALLED="${everything% libgtest-dev*} libgtest-dev procps" run test
[ $? -eq 0 ] && [ ! -s "$tmp/calls" ] || { fail "torch and numpy from pip: installed anyway"; cat "$tmp/calls"; }
PY_MODULES="numpy" INSTALLED="${everything% libgtest-dev*} libgtest-dev procps" run test
grep -q "install .* python3-torch$" "$tmp/calls" || { fail "no torch anywhere: not installed"; cat "$tmp/calls"; }

bin=$tmp/bin-no-sudo; stand_ins "$bin" sudo
UID_IS=1000 INSTALLED=${everything/clang /} run sanitizers
[ $? -eq 1 ] && grep -q "missing packages: clang" "$tmp/out" && grep -q "NO_APT=1" "$tmp/out" && [ ! -s "$tmp/calls" ] ||
    { fail "not root, no sudo: no clear refusal"; cat "$tmp/out"; }

bin=$tmp/bin-no-node; stand_ins "$bin" node npm
INSTALLED=$everything run build
grep -q "install .* nodejs npm$" "$tmp/calls" || { fail "node and npm missing: not installed"; cat "$tmp/calls"; }

bin=$tmp/bin; INSTALLED="" NO_APT=1 run build
[ $? -eq 0 ] && [ ! -s "$tmp/calls" ] && grep -q "missing (NO_APT=1, not installed): build-essential" "$tmp/out" ||
    { fail "NO_APT=1: not only listed"; cat "$tmp/out"; }

APT_FAILS=1 INSTALLED="" run build
[ $? -eq 1 ] && grep -q "apt-get could not install build-essential" "$tmp/out" && grep -q "NO_APT=1" "$tmp/out" ||
    { fail "apt-get's failure hidden"; cat "$tmp/out"; }

bin=$tmp/bin-no-dpkg; stand_ins "$bin" dpkg
run build
[ $? -eq 0 ] && [ ! -s "$tmp/calls" ] && grep -q "no dpkg here.*build-essential" "$tmp/out" ||
    { fail "no dpkg: not said"; cat "$tmp/out"; }

run tests 2>/dev/null
[ $? -eq 2 ] && grep -q "usage:" "$tmp/out" || fail "unknown group accepted"

[ $failures -eq 0 ] && echo "PASS: install_packages.sh" || { echo "$failures failure(s)"; exit 1; }
