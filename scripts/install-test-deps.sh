#!/usr/bin/env bash
# Installs the Debian packages that foxproxy's integration tests drive as real
# daemons (integration/harness), and leaves their system services stopped: the tests
# start private instances on loopback ports, in temporary directories.
#
#   sudo ./scripts/install-test-deps.sh
#
# Idempotent: installs only what is missing; runs "apt-get update" only when an install
# is needed and the first attempt failed (stale or empty package lists).
#
# Services: a package install may start its daemon. While installing, a temporary
# /usr/sbin/policy-rc.d (exit 101) stops the maintainer scripts from starting anything,
# unless one exists already. Afterwards, any daemon of these packages that was not
# running before but runs now is stopped by its init script or unit, and the packages
# installed now are disabled at boot: postfix gets "No configuration" (no main.cf, so
# it cannot start), clamd would otherwise run with the system's signatures and
# freshclam would try the network. Daemons that ran before this script are left alone.
set -euo pipefail

PACKAGES=(postfix swaks rbldnsd clamav-daemon c-icap libc-icap-mod-virus-scan bind9-dnsutils chromium gnupg gpg-wks-client openssl postgresql)

say() { printf 'install-test-deps: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- "$0" "$@"
    fi
    say "must run as root" >&2
    exit 1
fi
export PATH=$PATH:/usr/sbin:/sbin # postfix, rbldnsd, clamd and the init tools live there
command -v apt-get >/dev/null 2>&1 || { say "apt-get not found: Debian or Ubuntu only" >&2; exit 1; }

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "all present: ${PACKAGES[*]}"
    exit 0
fi
say "missing: ${missing[*]}"

# The system services these packages bring, with the pidfile their init script uses.
SERVICES=(postfix clamav-daemon clamav-freshclam c-icap rbldnsd postgresql)
pidfile_of() {
    case "$1" in
    postfix) echo /var/spool/postfix/pid/master.pid ;;
    clamav-daemon) echo /run/clamav/clamd.pid ;;
    clamav-freshclam) echo /run/clamav/freshclam.pid ;;
    c-icap) echo /run/c-icap/c-icap.pid ;;
    rbldnsd) echo /run/rbldnsd.pid ;;
    postgresql) echo /run/postgresql/15-main.pid ;; # the packaged cluster 15/main
    esac
}
units_of() {
    case "$1" in
    clamav-daemon) echo clamav-daemon.service clamav-daemon.socket ;;
    clamav-freshclam) echo clamav-freshclam.service clamav-freshclam-once.timer ;;
    rbldnsd) echo rbldnsd.service rbldnsd.socket ;;
    postgresql) echo postgresql.service postgresql@15-main.service ;;
    *) echo "$1.service" ;;
    esac
}
have_systemd() { [ -d /run/systemd/system ]; }
pid_running() { # PID from the service's pidfile, if that process is alive
    local f pid
    f=$(pidfile_of "$1")
    [ -r "$f" ] || return 1
    pid=$(tr -dc '0-9' <"$f" | head -c 10)
    [ -n "$pid" ] && alive "$pid" && echo "$pid"
}
alive() { # a zombie is not alive: PID 1 may reap orphans only after a while
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [ "${line%% *}" != Z ]
}
running() {
    if have_systemd; then
        local u
        for u in $(units_of "$1"); do
            systemctl is-active --quiet "$u" 2>/dev/null && return 0
        done
        return 1
    fi
    pid_running "$1" >/dev/null
}

declare -A was_running=() was_installed=()
for s in "${SERVICES[@]}"; do
    if running "$s"; then was_running[$s]=1; fi
    if installed "$s"; then was_installed[$s]=1; fi
done

# Keep maintainer scripts from starting daemons during the install (invoke-rc.d and
# deb-systemd-invoke both honour policy-rc.d). Only ours is removed afterwards.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from foxproxy scripts/install-test-deps.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
    say "temporary $policy: no service starts during the install"
fi

for p in "${missing[@]}"; do
    if [ "$p" = postfix ]; then
        # "No configuration": no /etc/postfix/main.cf, so the system instance never starts;
        # the tests run "postfix -c DIR" with their own.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        say "preseeded postfix: No configuration"
    fi
done

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
}
if ! apt_install; then
    say "install failed; running apt-get update and retrying"
    apt-get -o DPkg::Lock::Timeout=300 update
    apt_install
fi
say "installed: ${missing[*]}"

# Stop what the install started anyway (e.g. when policy-rc.d was already present but
# allowed starts, or under systemd), and keep newly installed services from starting at
# boot. Never touch a daemon that ran before.
for s in "${SERVICES[@]}"; do
    if [ -z "${was_running[$s]:-}" ] && running "$s"; then
        if have_systemd; then
            # shellcheck disable=SC2046
            systemctl stop $(units_of "$s") 2>/dev/null || true
        elif [ -x "/etc/init.d/$s" ]; then
            "/etc/init.d/$s" stop >/dev/null 2>&1 || true
        fi
        if pid=$(pid_running "$s"); then
            kill "$pid" 2>/dev/null || true # the PID from its own pidfile, nothing else
            for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.2; done
        fi
        if running "$s"; then
            say "WARNING: could not stop $s" >&2
        else
            say "stopped $s (started by the package install)"
        fi
    fi
    # clamav-freshclam comes in as a dependency of clamav-daemon
    if [ -z "${was_installed[$s]:-}" ] && installed "$s"; then
        if have_systemd; then
            # shellcheck disable=SC2046
            systemctl disable $(units_of "$s") >/dev/null 2>&1 || true
        elif command -v update-rc.d >/dev/null 2>&1 && [ -x "/etc/init.d/$s" ]; then
            update-rc.d "$s" disable >/dev/null 2>&1 || true
        fi
        say "disabled $s at boot (the tests start their own instances)"
    fi
done

for c in postfix postqueue postconf swaks rbldnsd clamd c-icap dig gpg gpgconf openssl; do
    command -v "$c" >/dev/null 2>&1 || { say "ERROR: $c still missing" >&2; exit 1; }
done
# PostgreSQL's server binaries are not on PATH (internal/pgtest runs them from here).
[ -x /usr/lib/postgresql/15/bin/postgres ] || { say "ERROR: /usr/lib/postgresql/15/bin/postgres still missing" >&2; exit 1; }
say "done"
