# Sourced by the download tests: tests/http_fixture_server.py on 127.0.0.1, serving fixtures.
# The caller sets $tmp (a scratch directory) and traps stop_server on exit.
#   start_server ROOT [server options]   (re)starts it on a free port; sets $url (no trailing /);
#                                         requests are logged to $tmp/requests.log
#   stop_server                          stops it, if running
server_pid=
stop_server() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=; }
start_server() {
    stop_server
    local root=$1
    shift
    : >"$tmp/port"
    python3 tests/http_fixture_server.py --root "$root" --log "$tmp/requests.log" "$@" >"$tmp/port" &
    server_pid=$!
    for _ in $(seq 50); do grep -q PORT "$tmp/port" && break; sleep 0.1; done
    url="http://127.0.0.1:$(awk '{print $2}' "$tmp/port")"
    [ "$url" != "http://127.0.0.1:" ] || { echo "FAIL: the fixture server did not start"; exit 1; }
}
