#!/usr/bin/env bash
# Private, throw-away Postfix instance for foxproxy's integration tests: an
# after-queue content filter in the FILTER_README "advanced" layout.
#
#   DIR=/tmp/pfx.X FILTER=127.0.0.1:10025 integration/scripts/postfix.sh start|stop|status|reload
#
#   client ──> INBOUND smtpd (content_filter=foxproxy:[FILTER])
#                └─ queue ─> "foxproxy" transport (smtp client, XFORWARD) ──> FILTER (foxproxy)
#   FILTER ──> REINJECT smtpd (content_filter empty, XFORWARD allowed)
#                └─ queue ─> virtual(8) ─> Maildir $DIR/mail/{rcpt,sender,other}/new/
#   optional: BEFOREQUEUE smtpd with smtpd_proxy_filter=[FILTER] (before-queue mode)
#
# rcpt@example.test -> mail/rcpt, sender@example.test -> mail/sender, any other
# @example.test (postmaster, bounces' postmaster copies) -> mail/other.
#
# Environment (all optional except DIR):
#   DIR               instance directory; made 0755 because postfix and nobody must traverse it
#   INBOUND           inbound smtpd            (default 127.0.0.1:2525)
#   REINJECT          re-injection smtpd       (default 127.0.0.1:10026)
#   FILTER            foxproxy's address       (default 127.0.0.1:10025); nothing need listen there
#   BEFOREQUEUE       if set, a before-queue smtpd on this address proxying to FILTER
#   QUEUE_RUN_DELAY, MIN_BACKOFF, MAX_BACKOFF   retry timers (default 1s, 2s, 4s: fast tests;
#                     Postfix's own defaults are 300s, 300s, 4000s)
#   MAIN_CF_EXTRA     lines appended to main.cf (a later setting wins over an earlier one)
#   INBOUND_OPTS, REINJECT_OPTS, FILTER_OPTS, BEFOREQUEUE_OPTS
#                     newline-separated "name=value" lines, each added as "-o name=value"
#                     to that master.cf service ("-o { name = value }" if it has spaces)
#
# $DIR/etc/reinject_access is a texthash check_recipient_access table on the REINJECT
# smtpd (e.g. "bad@example.test 550 5.1.1 User unknown"); it is created empty unless it
# exists. Edit it and run "reload" to change it.
#
# Log: $DIR/maillog. Services log under distinct names so each hop is easy to find:
#   postfix/inbound/smtpd, postfix/foxproxy/smtp (delivery to FILTER),
#   postfix/reinject/smtpd, postfix/beforequeue/smtpd, postfix/virtual (Maildir).
#
# Without a tty "postfix start" prints nothing, even on errors; this script prints the
# tail of the maillog on stderr whenever a command fails.
set -euo pipefail

: "${DIR:?set DIR to the instance directory}"
INBOUND=${INBOUND:-127.0.0.1:2525}
REINJECT=${REINJECT:-127.0.0.1:10026}
FILTER=${FILTER:-127.0.0.1:10025}
BEFOREQUEUE=${BEFOREQUEUE:-}
QUEUE_RUN_DELAY=${QUEUE_RUN_DELAY:-1s}
MIN_BACKOFF=${MIN_BACKOFF:-2s}
MAX_BACKOFF=${MAX_BACKOFF:-4s}
MAIN_CF_EXTRA=${MAIN_CF_EXTRA:-}
INBOUND_OPTS=${INBOUND_OPTS:-}
REINJECT_OPTS=${REINJECT_OPTS:-}
FILTER_OPTS=${FILTER_OPTS:-}
BEFOREQUEUE_OPTS=${BEFOREQUEUE_OPTS:-}

CONF="$DIR/etc"
LOG="$DIR/maillog"

die() {
    echo "postfix.sh: $*" >&2
    if [ -s "$LOG" ]; then
        echo "postfix.sh: last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
    fi
    exit 1
}

PATH=$PATH:/usr/sbin:/sbin # a user's PATH often lacks them
command -v postfix >/dev/null 2>&1 ||
    die "postfix is not installed: run ./scripts/install-test-deps.sh"

# opts NAME=VALUE-lines -> master.cf continuation lines "  -o NAME=VALUE", or
# "  -o { NAME = VALUE }" when the value has spaces (master.cf syntax since Postfix 3.0)
opts() {
    local line
    while IFS= read -r line; do
        case "$line" in
        "") ;;
        *" "*) printf '  -o { %s }\n' "$line" ;;
        *) printf '  -o %s\n' "$line" ;;
        esac
    done <<<"$1"
}

master_pid() {
    tr -d ' \n' <"$DIR/queue/pid/master.pid" 2>/dev/null || true
}

# group_alive PID: true while the master or any process of its process group (the
# master is a session leader, its daemons are in its group) is still running. Zombies
# do not count: the master is an orphan reparented to PID 1, and a PID 1 that reaps
# only now and then (seen: ~1 s) would make "kill -0" report it alive long after exit.
group_alive() {
    local f line state ppid pgrp
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        read -r state ppid pgrp _ <<<"${line##*) }"
        if [ "$pgrp" = "$1" ] && [ "$state" != Z ]; then
            return 0
        fi
    done
    return 1
}

write_config() {
    mkdir -p "$CONF" "$DIR/queue" "$DIR/data" "$DIR/mail"
    chmod 755 "$DIR" "$CONF"
    chown postfix:postfix "$DIR/data"
    chmod 700 "$DIR/data"
    chown nobody:nogroup "$DIR/mail"
    [ -f "$CONF/reinject_access" ] || : >"$CONF/reinject_access"

    cat >"$CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $DIR/queue
data_directory = $DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
myorigin = \$mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
biff = no
# no DNS at all (the test machines have none)
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
# no TLS
smtp_tls_security_level = none
smtpd_tls_security_level = none
# delivery: @example.test -> Maildirs under $DIR/mail (texthash: no postmap needed)
virtual_mailbox_domains = example.test
virtual_mailbox_base = $DIR/mail
virtual_mailbox_maps = texthash:$CONF/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
# bounces and double bounces also go to postmaster (mail/other), so tests can see them
notify_classes = bounce, 2bounce, resource, software
# logging without syslog
maillog_file = $LOG
maillog_file_prefixes = $DIR, /dev/stdout
# retry timers; the defaults (300s, 300s, 4000s) would make a test wait minutes
queue_run_delay = $QUEUE_RUN_DELAY
minimal_backoff_time = $MIN_BACKOFF
maximal_backoff_time = $MAX_BACKOFF
# the re-injection smtpd's recipient check (see reinject_access)
reinject_recipient_restrictions = check_recipient_access texthash:$CONF/reinject_access, permit_mynetworks, reject
EOF
    if [ -n "$MAIN_CF_EXTRA" ]; then
        printf '# MAIN_CF_EXTRA\n%s\n' "$MAIN_CF_EXTRA" >>"$CONF/main.cf"
    fi

    printf '%s\n' 'rcpt@example.test    rcpt/' 'sender@example.test  sender/' \
        '@example.test        other/' >"$CONF/vmailbox"

    {
        cat <<EOF
$INBOUND inet n - n - - smtpd
  -o syslog_name=postfix/inbound
  -o content_filter=foxproxy:[${FILTER%:*}]:${FILTER##*:}
  -o receive_override_options=no_address_mappings
EOF
        opts "$INBOUND_OPTS"
        cat <<EOF
$REINJECT inet n - n - 10 smtpd
  -o syslog_name=postfix/reinject
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=
  -o smtpd_recipient_restrictions=\$reinject_recipient_restrictions
  -o smtpd_data_restrictions=
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
EOF
        opts "$REINJECT_OPTS"
        if [ -n "$BEFOREQUEUE" ]; then
            cat <<EOF
$BEFOREQUEUE inet n - n - - smtpd
  -o syslog_name=postfix/beforequeue
  -o smtpd_proxy_filter=[${FILTER%:*}]:${FILTER##*:}
  -o smtpd_client_connection_count_limit=10
EOF
            opts "$BEFOREQUEUE_OPTS"
        fi
        cat <<EOF
foxproxy  unix - - n - 10 smtp
  -o syslog_name=postfix/foxproxy
  -o smtp_send_xforward_command=yes
  -o disable_mime_output_conversion=yes
  -o smtp_generic_maps=
EOF
        opts "$FILTER_OPTS"
        cat <<'EOF'
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
virtual   unix - n n - - virtual
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
    } >"$CONF/master.cf"
    backdate "$CONF"/*
}

# Postfix does not trust a table or main.cf whose mtime is in the current second (it
# may still be being written): every command re-reads it every 0.3 s until it is old
# enough, which made each postfix/postconf/postqueue call take ~2 s after a rewrite.
# Backdating the mtime of what we just wrote avoids that wait.
backdate() {
    touch -d "@$(($(date +%s) - 10))" "$@"
}

case "${1:-}" in
start)
    write_config
    # "postfix start" runs the same integrity checks as "postfix check" (and creates the
    # queue tree), so a separate "postfix check" would only repeat them.
    postfix -c "$CONF" start </dev/null >/dev/null 2>&1 || die "postfix start failed (rc $?)"
    echo "postfix.sh: started, master PID $(master_pid), inbound $INBOUND, reinject $REINJECT, filter $FILTER${BEFOREQUEUE:+, before-queue $BEFOREQUEUE}"
    ;;
stop)
    pid=$(master_pid)
    if [ -z "$pid" ] || ! group_alive "$pid"; then
        echo "postfix.sh: not running"
        exit 0
    fi
    # SIGTERM to the master is what "postfix stop" sends too; the master then signals its
    # process group and exits within milliseconds. "postfix stop" itself polls with
    # "sleep 1", so it costs 1-2 s; waiting on the PID here costs ~0.1 s. The ports and
    # $DIR are only free once the PID is gone.
    # Only a postfix master gets the signal: a stale pidfile may name a reused PID.
    # (If the master is gone, its daemons notice and exit by themselves.)
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = master ]; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
    for _ in $(seq 1 100); do
        group_alive "$pid" || { echo "postfix.sh: stopped (master PID $pid)"; exit 0; }
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    die "master PID $pid (or its process group) did not exit within 10 s of SIGTERM; sent SIGKILL to the group"
    ;;
status)
    pid=$(master_pid)
    if postfix -c "$CONF" status </dev/null >/dev/null 2>&1; then
        echo "postfix.sh: running, master PID $pid"
    else
        echo "postfix.sh: not running"
        exit 1
    fi
    ;;
reload)
    postfix -c "$CONF" reload </dev/null >/dev/null 2>&1 || die "postfix reload failed"
    echo "postfix.sh: reloaded"
    ;;
*)
    echo "usage: DIR=... [INBOUND=...] [REINJECT=...] [FILTER=...] $0 start|stop|status|reload" >&2
    exit 2
    ;;
esac
