#!/usr/bin/env bash
# Idempotent installer for the SMPP interop peers.
#
#   tests/interop/setup.sh            # warn about anything that could not be installed, exit 0
#   CI=true tests/interop/setup.sh    # any failure is fatal: exit 1 naming what is missing
#
# Installs, each only when missing:
#   - tests/interop/npm/node_modules   via `npm ci` (npm smpp 0.5.1, from package-lock.json)
#   - tests/interop/.venv              python venv with py/requirements.txt (smpplib 2.2.4)
#   - sipp, tshark, g++, python3-venv  `apt-get install -y …` (`apt-get update` first,
#                                      only when an install is needed); dumpcap gets
#                                      capture rights when a non-root capture fails
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
strict=false
case "${CI:-}" in true|TRUE|True|1|yes) strict=true ;; esac

missing=()
note() { echo "setup.sh: $*"; }
fail() {
    # $1 = what is missing, $2 = details
    missing+=("$1")
    echo "setup.sh: $( $strict && echo ERROR || echo WARNING ): $1 unavailable${2:+ ($2)}" >&2
}

as_root() {
    # apt must never ask (tshark's wireshark-common asks about non-root
    # capture): sudo resets the environment, so pass DEBIAN_FRONTEND through
    # `env`, and give nothing a terminal to read from.
    if [ "$(id -u)" -eq 0 ]; then
        env DEBIAN_FRONTEND=noninteractive "$@" </dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n env DEBIAN_FRONTEND=noninteractive "$@" </dev/null
    else
        echo "setup.sh: need root for: $*" >&2
        return 1
    fi
}

# ------------------------------------------------------------------ system tools
# First, so the Python venv and the fuzz smoke find what they need.
pkgs=()
# The SIP interop streams SIPp's own g711a.pcap, which the package ships.
SIPP_PCAP=/usr/share/sip-tester/g711a.pcap
{ command -v sipp >/dev/null 2>&1 && [ -r "$SIPP_PCAP" ]; } || pkgs+=(sip-tester)
command -v tshark >/dev/null 2>&1 || pkgs+=(tshark)
# The fuzz smoke builds libFuzzer, which is C++.
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || pkgs+=(g++)
# Debian splits venv support (ensurepip) out of python3.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    pkgs+=(python3-venv)
fi
if [ ${#pkgs[@]} -eq 0 ]; then
    note "system tools: ok (sipp, tshark, c++, python3 venv)"
elif ! command -v apt-get >/dev/null 2>&1; then
    fail "${pkgs[*]}" "no apt-get; install them by hand"
else
    note "system tools: apt-get install ${pkgs[*]}"
    # Answer wireshark-common's question ourselves: no setuid dumpcap (we
    # grant capabilities below only when a capture fails).
    if command -v debconf-set-selections >/dev/null 2>&1; then
        seed="$(mktemp)"
        echo 'wireshark-common wireshark-common/install-setuid boolean false' >"$seed"
        chmod 644 "$seed"
        as_root debconf-set-selections "$seed" >/dev/null 2>&1 || true
        rm -f "$seed"
    fi
    # Wait for a concurrent apt/dpkg run instead of failing on its lock.
    lock=(-o DPkg::Lock::Timeout=300)
    apt_log="$(mktemp)"
    # A failing update (one broken third-party repository) need not stop
    # the install: the packages may still be in the lists we have.
    as_root apt-get "${lock[@]}" update -q >"$apt_log" 2>&1 ||
        note "apt-get update failed (trying the install anyway): $(tail -n 3 "$apt_log" | tr '\n' ' ')"
    as_root apt-get "${lock[@]}" install -y -q --no-install-recommends "${pkgs[@]}" >"$apt_log" 2>&1 ||
        note "apt-get install failed: $(tail -n 5 "$apt_log" | tr '\n' ' ')"
    rm -f "$apt_log"
    { command -v sipp >/dev/null 2>&1 && [ -r "$SIPP_PCAP" ]; } || fail "sipp with $SIPP_PCAP (Debian package sip-tester)" "apt-get update/install failed"
    command -v tshark >/dev/null 2>&1 || fail "tshark (Debian package tshark)" "apt-get update/install failed"
    command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || fail "a C++ compiler (Debian package g++)" "apt-get update/install failed"
    [ ${#missing[@]} -eq 0 ] && note "system tools: installed"
fi

# A capture must really work, not just tshark exist: apt leaves dumpcap
# without capture rights for non-root users.
capture_ok() {
    timeout 10 dumpcap -q -i lo -a duration:1 -w /dev/null >/dev/null 2>&1
}
if command -v dumpcap >/dev/null 2>&1 && ! capture_ok; then
    note "packet capture: not permitted; granting dumpcap cap_net_raw,cap_net_admin"
    command -v setcap >/dev/null 2>&1 || as_root apt-get install -y -q --no-install-recommends libcap2-bin >/dev/null 2>&1
    as_root setcap cap_net_raw,cap_net_admin+eip "$(command -v dumpcap)" >/dev/null 2>&1
    capture_ok || fail "packet capture on lo (dumpcap)" "run as root, or: sudo setcap cap_net_raw,cap_net_admin+eip $(command -v dumpcap)"
fi

# SIPp plays a pcap's RTP through a raw socket: without root it needs
# CAP_NET_RAW, or the voice interop test fails every time.
if command -v sipp >/dev/null 2>&1 && [ "$(id -u)" -ne 0 ]; then
    sipp_bin="$(readlink -f "$(command -v sipp)")"
    if ! getcap "$sipp_bin" 2>/dev/null | grep -q cap_net_raw; then
        note "sipp: granting cap_net_raw (it plays pcap audio through a raw socket)"
        command -v setcap >/dev/null 2>&1 || as_root apt-get install -y -q --no-install-recommends libcap2-bin >/dev/null 2>&1
        as_root setcap cap_net_raw+eip "$sipp_bin" >/dev/null 2>&1
        getcap "$sipp_bin" 2>/dev/null | grep -q cap_net_raw ||
            fail "sipp pcap playback (raw socket)" "run as root, or: sudo setcap cap_net_raw+eip $sipp_bin"
    fi
fi

# ------------------------------------------------------------------ npm peers
npm_ok() {
    (cd "$here/npm" && node -e '
        const v = require("smpp/package.json").version;
        if (v !== "0.5.1") { console.error("smpp " + v + " installed, want 0.5.1"); process.exit(1); }
    ') >/dev/null 2>&1
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    fail "node/npm" "install Node.js >= 18 with npm"
elif npm_ok; then
    note "npm peers: ok (smpp 0.5.1 in tests/interop/npm/node_modules)"
else
    note "npm peers: running npm ci in tests/interop/npm"
    if (cd "$here/npm" && npm ci --no-audit --no-fund --loglevel=error) && npm_ok; then
        note "npm peers: installed"
    else
        fail "npm package smpp@0.5.1 (tests/interop/npm/node_modules)" "npm ci failed"
    fi
fi

# ------------------------------------------------------------------ python peer
venv="$here/.venv"
py_ok() {
    "$venv/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m, sys
sys.exit(0 if m.version("smpplib") == "2.2.4" else 1)
EOF
}

if [ -x "$venv/bin/python" ] && py_ok; then
    note "python peer: ok (smpplib 2.2.4 in tests/interop/.venv)"
elif ! command -v python3 >/dev/null 2>&1; then
    fail "python3" "install Python >= 3.8"
else
    if [ ! -x "$venv/bin/python" ]; then
        note "python peer: creating venv tests/interop/.venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || { rm -rf "$venv"; fail "python venv tests/interop/.venv" "python3 -m venv failed; on Debian: apt-get install python3-venv"; }
    fi
    if [ -x "$venv/bin/python" ]; then
        note "python peer: pip install -r py/requirements.txt"
        if "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/py/requirements.txt" && py_ok; then
            note "python peer: installed"
        else
            fail "python package smpplib==2.2.4 (tests/interop/.venv)" "pip install failed"
        fi
    fi
fi

# ------------------------------------------------------------------ verdict
if [ ${#missing[@]} -gt 0 ]; then
    if $strict; then
        echo "setup.sh: FATAL (CI=true): missing: $(IFS=';'; echo "${missing[*]}")" >&2
        exit 1
    fi
    echo "setup.sh: WARNING: interop tests needing these will not run: $(IFS=';'; echo "${missing[*]}")" >&2
    exit 0
fi
note "all interop peers ready"
exit 0
