#!/bin/sh
# hubgate's container entrypoint: wait (bounded) for PostgreSQL, say what a first start does,
# apply the optional ACME settings, then become `hubgate serve` (exec: SIGTERM reaches it).
# CI runs this same script outside a container (tests/container.rs), so it assumes nothing of
# the image but a POSIX shell, pg_isready and the hubgate binary.
#
# Environment (besides hubgate's own HUBGATE_* and DATABASE_URL):
#   HUBGATE_BIN                 the binary (default: hubgate on PATH)
#   HUBGATE_DB_WAIT             seconds to wait for the database (default 120)
#   HUBGATE_ACME_ENABLED        true/false: Set-AcmeConfig -Enabled before the start
#   HUBGATE_ACME_CONTACT        comma-separated e-mail addresses for the CA
#   HUBGATE_ACME_DOMAINS        comma-separated names (default: HUBGATE_SERVER_NAME)
#   HUBGATE_ACME_DIRECTORY_URL  the ACME directory (default: Let's Encrypt)
set -eu

bin="${HUBGATE_BIN:-hubgate}"
wait_secs="${HUBGATE_DB_WAIT:-120}"
data_dir="${HUBGATE_DATA_DIR:-/var/lib/hubgate}"

say() { printf 'entrypoint: %s\n' "$*"; }
die() { printf 'entrypoint: %s\n' "$*" >&2; exit 1; }

case "$wait_secs" in
    '' | *[!0-9]*) die "HUBGATE_DB_WAIT must be a whole number of seconds, not '$wait_secs'" ;;
esac

# Without DATABASE_URL hubgate runs its own private cluster in the data directory: nothing to
# wait for.
if [ -n "${DATABASE_URL:-}" ]; then
    command -v pg_isready >/dev/null 2>&1 || die "pg_isready is not installed (postgresql-client)"
    say "waiting for the database (at most ${wait_secs} s)"
    start=$(date +%s)
    # pg_isready's own timeout bounds each try; the deadline bounds them all.
    until pg_isready -q -t 3 -d "$DATABASE_URL" >/dev/null 2>&1; do
        if [ $(($(date +%s) - start)) -ge "$wait_secs" ]; then
            die "the database did not answer within ${wait_secs} s (DATABASE_URL, HUBGATE_DB_WAIT)"
        fi
        sleep 1
    done
    say "the database is up"
fi

# hubgate makes the data directory private itself; the marker only tells a first start here.
(umask 077 && mkdir -p "$data_dir") 2>/dev/null || true
if [ ! -e "$data_dir/.started" ]; then
    say "first start in $data_dir as ${HUBGATE_SERVER_NAME:-$(hostname)}"
    if [ -n "${HUBGATE_ADMIN_PASSWORD:-}" ]; then
        say "the console's Administrator password is HUBGATE_ADMIN_PASSWORD"
    else
        say "the console's Administrator password is printed once below: keep it"
    fi
    if [ -z "${HUBGATE_ORGANIZATION_KEY:-}" ]; then
        say "the organization key is made in $data_dir/organization.key: back it up with the data"
    fi
    { : >"$data_dir/.started"; } 2>/dev/null || true
fi

# A value as a single-quoted shell argument ('' for each quote), and a comma list as a list.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
list() {
    out=""
    old_ifs=$IFS
    IFS=,
    for item in $1; do
        item=$(printf '%s' "$item" | sed 's/^ *//; s/ *$//')
        [ -n "$item" ] && out="${out:+$out,}$(quote "$item")"
    done
    IFS=$old_ifs
    printf '%s' "$out"
}

if [ -n "${HUBGATE_ACME_ENABLED:-}" ]; then
    case "$HUBGATE_ACME_ENABLED" in
        true | 1 | yes) enabled='$true' ;;
        false | 0 | no) enabled='$false' ;;
        *) die "HUBGATE_ACME_ENABLED must be true or false, not '$HUBGATE_ACME_ENABLED'" ;;
    esac
    line="Set-AcmeConfig -Enabled $enabled"
    [ -n "${HUBGATE_ACME_DIRECTORY_URL:-}" ] && line="$line -DirectoryUrl $(quote "$HUBGATE_ACME_DIRECTORY_URL")"
    [ -n "${HUBGATE_ACME_CONTACT:-}" ] && line="$line -Contact $(list "$HUBGATE_ACME_CONTACT")"
    [ -n "${HUBGATE_ACME_DOMAINS:-}" ] && line="$line -Domains $(list "$HUBGATE_ACME_DOMAINS")"
    say "ACME: $line"
    "$bin" shell -c "$line" >/dev/null || die "the ACME settings were refused"
fi

say "starting hubgate serve"
exec "$bin" serve "$@"
