#!/usr/bin/env bash
# The system packages (Debian names) a make target needs, installed with apt-get when any is missing:
#   scripts/install_packages.sh build        compilers and the data tools' libraries, Node.js and npm
#                                            (make setup), MPI, matplotlib for the plots: make quickstart
#   scripts/install_packages.sh test         build's, GoogleTest and PyTorch (the CPU references): make test
#   scripts/install_packages.sh sanitizers   test's, clang and its sanitizer and libFuzzer runtimes:
#                                            make test-asan, make fuzz-run, .ci/run
# When everything is there it changes nothing and prints nothing; python3-torch, -numpy and
# -matplotlib are there too when $PYTHON (default python3) imports them. Not root: apt-get runs through
# sudo. NO_APT=1 only lists what is missing (for machines whose packages someone else manages).
# Without dpkg (not Debian or Ubuntu) it names the packages to find under the system's own names.
# The CUDA toolkit is not a Debian package here: the Makefile finds nvcc and says so if it cannot.
set -euo pipefail

build=(build-essential libarchive-dev libcurl4-openssl-dev libzstd-dev liblzma-dev zlib1g-dev nlohmann-json3-dev
       libopenmpi-dev openmpi-bin python3-matplotlib)
test=("${build[@]}" libgtest-dev python3-torch python3-numpy procps)  # procps: pgrep, tests/sanitizer_script.sh
sanitizers=("${test[@]}" clang libclang-rt-dev)

case ${1:-} in
    build) wanted=("${build[@]}") ;;
    test) wanted=("${test[@]}") ;;
    sanitizers) wanted=("${sanitizers[@]}") ;;
    *) echo "usage: $0 build|test|sanitizers" >&2; exit 2 ;;
esac

# Node.js may come from elsewhere than Debian (its npm then is no Debian package): ask for the
# commands, not the packages.
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ! command -v dpkg >/dev/null; then
    missing+=("${wanted[@]}")
    echo "install_packages.sh: no dpkg here (not Debian or Ubuntu), so nothing is installed. Make sure the" \
        "equivalents of these Debian packages are installed: ${missing[*]}" >&2
    exit 0
fi
# A Python module installed another way (pip, conda) counts: python3-X is there when $PYTHON
# (default python3) imports X; the Makefile passes the Python it found with PyTorch.
python_imports() { command -v "${PYTHON:-python3}" >/dev/null && "${PYTHON:-python3}" -c "import $1" >/dev/null 2>&1; }
for p in "${wanted[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 && continue
    [[ $p == python3-* ]] && python_imports "${p#python3-}" && continue
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "${NO_APT:-0}" = 1 ]; then
    echo "install_packages.sh: missing (NO_APT=1, not installed): ${missing[*]}" >&2
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "install_packages.sh: missing packages: ${missing[*]}. Install them as root" \
            "(apt-get install ${missing[*]}), or run again with NO_APT=1 to go on without them." >&2
        exit 1
    }
    sudo=(sudo)
fi
echo "install_packages.sh: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" || {
    echo "install_packages.sh: apt-get could not install ${missing[*]} (above: why). If they are installed" \
        "another way (conda, modules), run again with NO_APT=1 to go on without apt-get." >&2
    exit 1
}
