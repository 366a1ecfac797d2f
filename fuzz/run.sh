#!/usr/bin/env bash
# Fuzz one target of linux_status for a bounded time, on the STABLE Rust toolchain.
#
#   fuzz/run.sh TARGET [SECONDS]   TARGET: proc_parser | key_grammar | netlink_reply |
#                                  agent2_protocol | config_parser | cgroup_path | all
#                                  (default 60 s)
#
# How it works without nightly or cargo-fuzz: the libfuzzer-sys crate compiles LLVM's
# libFuzzer from its bundled C++ sources (needs a C++ compiler), and rustc's stable codegen
# flags (-C passes=sancov-module, -C llvm-args=-sanitizer-coverage-*) add the coverage
# counters libFuzzer reads. `--target <host>` keeps those flags off build scripts and proc
# macros. There is no AddressSanitizer (that needs -Zsanitizer): the code under test is safe
# Rust, and what is hunted is panics (overflow and debug assertions on), hangs, runaway memory
# and disagreement with the naive reference parser.
#
# Installs what is missing (g++, libclang for the main crate's bindgen) with apt-get; the
# build is cached in fuzz/target, the growing corpus in fuzz/corpus/TARGET (seeds regenerated
# from tests/fixtures on every run into fuzz/corpus/seeds-TARGET). A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes this script exit non-zero; reproduce it with
#   fuzz/target/<host>/release/TARGET fuzz/artifacts/TARGET/crash-...
# Prints, per target: executions, exec/s, coverage (cov = edges, ft = features), corpus size.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
TARGET="${1:-}"
SECONDS_PER_TARGET="${2:-60}"
TARGETS=(proc_parser key_grammar netlink_reply agent2_protocol config_parser cgroup_path)

usage() { echo "usage: $0 {proc_parser|key_grammar|netlink_reply|agent2_protocol|config_parser|cgroup_path|all} [SECONDS]" >&2; exit 2; }
case "$TARGET" in
    proc_parser|key_grammar|netlink_reply|agent2_protocol|config_parser|cgroup_path) RUN=("$TARGET") ;;
    all) RUN=("${TARGETS[@]}") ;;
    *) usage ;;
esac
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || usage

log() { printf '[fuzz] %s\n' "$*"; }

# --- what the build needs ---------------------------------------------------------------
missing=()
command -v c++ >/dev/null || missing+=(g++)
ldconfig -p 2>/dev/null | grep -q 'libclang' || missing+=(libclang-dev)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export RUSTUP_TOOLCHAIN=stable
HOST="$(rustc -vV | sed -n 's/^host: //p')"
log "$(rustc -V) (host $HOST), libFuzzer via libfuzzer-sys"

# --- build (cached) ---------------------------------------------------------------------
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
(cd "$FUZZ_DIR" && cargo build --quiet --release --locked --target "$HOST" --bins 2>&1) || {
    # --locked fails only before the first lock file exists; build once without it.
    (cd "$FUZZ_DIR" && cargo build --quiet --release --target "$HOST" --bins)
}
BIN_DIR="$FUZZ_DIR/target/$HOST/release"

# --- seeds from tests/fixtures ----------------------------------------------------------
# proc_parser input: 7 control bytes (family and protocol, buffer size, 4 read sizes), then
# table text.
seed_proc_parser() {
    local dir="$1" fixture file name family
    local i=0
    for fixture in "$ROOT"/tests/fixtures/*/; do
        for file in tcp tcp6 udp udp6; do
            [[ -f "$fixture$file" ]] || continue
            name="$(basename "$fixture")-$file"
            # bit 0: the IPv6 table; bit 1: a UDP table.
            case $file in
                tcp) family='\x00' ;; tcp6) family='\x01' ;; udp) family='\x02' ;; udp6) family='\x03' ;;
            esac
            # production buffer, one big read
            { printf "$family"'\xf0\x00\xff\xff\xff\xff'; head -c 12000 "$fixture$file"; } >"$dir/$name-prod"
            # 300-byte buffer (longer than any line), reads of 1, 7, 150 bytes, one EINTR
            { printf "$family"'\x2b\x01\x01\x07\x96\x00'; head -c 12000 "$fixture$file"; } >"$dir/$name-small"
            # 100-byte buffer: shorter than a line (LineTooLong)
            { printf "$family"'\x63\x00\x40\x40\x40\x40'; head -c 2000 "$fixture$file"; } >"$dir/$name-tiny"
            i=$((i + 3))
        done
    done
    echo "$i"
}

# key_grammar input: parameters, each ended by NUL.
seed_key_grammar() {
    local dir="$1" i=0 state
    emit() { printf "$1" >"$dir/seed-$i"; i=$((i + 1)); }
    emit ''
    emit '\x00'
    emit 'version'
    emit 'version\x00\x00'
    emit 'tcp_status'
    emit 'tcp_status\x00\x00'
    emit 'tcp_stat\x00LISTEN'
    emit 'tcp_status\x00LISTEN\x00extra'
    for state in ESTABLISHED ESTAB SYN_SENT SYN-SENT SYN_RECV SYN-RECV SYN_RCVD FIN_WAIT1 \
        FIN-WAIT-1 FIN_WAIT_1 FIN_WAIT2 FIN-WAIT-2 TIME_WAIT TIME-WAIT CLOSE UNCONN CLOSED \
        CLOSE_WAIT CLOSE-WAIT LAST_ACK LAST-ACK LISTEN CLOSING 'time_wait ' WAIT; do
        emit "tcp_status\\x00$state"
    done
    emit 'tcp_status\x00LISTEN\x00127.0.0.1\x00\x00\x00'
    emit 'tcp_status\x00ESTAB\x00\x00\x00::1\x00ssh'
    emit 'tcp_status\x00ESTAB\x0010.0.0.0/8\x0022\x00fd00::/8\x0065535'
    emit 'tcp_summary'
    emit 'tcp_summary\x00::ffff:127.0.0.1\x00http\x00\x00'
    emit 'listen_discovery'
    emit 'listen_stats'
    emit 'tcp_ext\x00ListenOverflows'
    emit 'tcp_ext\x00NoSuchCounter'
    emit 'INFO\x00x'
    # Every key's sample (tests/lib/keys.json, rendered from the key registry), as parameters.
    local sample
    while IFS= read -r sample; do
        emit "$sample"
    done < <("$PYTHON_FOR_SEEDS" -c '
import json, sys
for key in json.load(open(sys.argv[1]))["keys"]:
    inner = key["sample"][len("linux_status["):-1]
    print(inner.replace(",", "\\x00"))
' "$ROOT/tests/lib/keys.json")
    echo "$i"
}

# netlink_reply input: the sequence byte, then datagrams as 2-byte length + bytes. Seeds are
# well-formed dumps (one socket then DONE 0), the same ending failed (DONE -2), interrupted,
# an NLMSG_ERROR, a dump split over two datagrams, and sockets with attributes as the kernel
# sends them (SHUTDOWN, a cgroup id; a TIME_WAIT socket without any).
seed_netlink_reply() {
    local dir="$1"
    "$PYTHON_FOR_SEEDS" - "$dir" <<'PY'
import struct, sys
out = sys.argv[1]
def msg(kind, seq, payload, flags=0):
    body = struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload
    return body + b"\0" * (-len(body) % 4)
def sock(state):
    p = bytearray(72); p[0] = 2; p[1] = state; return bytes(p)
def seed(name, seq_byte, *grams):
    data = bytes([seq_byte]) + b"".join(struct.pack("<H", len(g)) + g for g in grams)
    open(f"{out}/{name}", "wb").write(data)
ok = msg(20, 1, sock(1)) + msg(20, 1, sock(10))
seed("good", 0, ok + msg(3, 1, struct.pack("=i", 0)))
seed("split", 0, ok, msg(3, 1, struct.pack("=i", 0)))
seed("done-enoent", 0, ok + msg(3, 1, struct.pack("=i", -2)))
seed("intr", 0, msg(20, 1, sock(1), 0x10) + msg(3, 1, struct.pack("=i", 0)))
seed("error", 0, msg(2, 1, struct.pack("=i", -13) + b"\0" * 16))
seed("foreign", 1, ok + msg(3, 1, struct.pack("=i", 0)))
def attr(kind, value):
    a = struct.pack("=HH", 4 + len(value), kind) + value
    return a + b"\0" * (-len(a) % 4)
with_cgroup = sock(1) + attr(8, b"\0") + attr(21, struct.pack("=Q", 4026))
seed("cgroup", 0, msg(20, 1, with_cgroup) + msg(20, 1, sock(6)) + msg(3, 1, struct.pack("=i", 0)))
# A UDP socket with INET_DIAG_SHUTDOWN and SK_MEMINFO (rcvbuf 8192, drops 2994).
udp = sock(7) + attr(8, b"\0") + attr(7, struct.pack("=9I", 7680, 8192, 0, 212992, 512, 0, 0, 0, 2994))
seed("udp-meminfo", 0, msg(20, 1, udp) + msg(3, 1, struct.pack("=i", 0)))
print(8)
PY
}
PYTHON_FOR_SEEDS="$(command -v python3)"

# agent2_protocol input: one byte (read size - 1), then the stream as agent 2 sends it:
# frames of type 1 (JSON) with a little-endian length, as seen from 6.0.14 and 7.0.22.
seed_agent2_protocol() {
    local dir="$1" i=0
    frame() { printf '%s' "$1" | python3 -c 'import struct,sys; b=sys.stdin.buffer.read(); sys.stdout.buffer.write(struct.pack("<II",1,len(b))+b)'; }
    emit() { { printf "$1"; shift; for body in "$@"; do frame "$body"; done; } >"$dir/seed-$i"; i=$((i + 1)); }
    emit '\x00' '{"id":1,"type":2,"version":"6.0.13"}' '{"id":0,"type":5}'
    emit '\x07' '{"id":1,"type":2,"version":"6.4.0"}' '{"id":2,"type":9,"private_options":{"Name":"LinuxStatus","Nodes":[{"Name":"System","Nodes":[{"Name":"Path","Nodes":[{"Value":"L3g=","Line":11}],"Line":11}],"Line":11},{"Name":"Backend","Nodes":[{"Value":"bmV0bGluaw==","Line":12}],"Line":12},{"Name":"SnapshotLifetime","Nodes":[{"Value":"MjUw","Line":13},{"Value":"LTE=","Line":14}],"Line":13}],"Line":11}}' '{"id":3,"type":5}'
    emit '\xff' '{"id":1,"type":8,"global_options":{"Timeout":7,"SourceIP":""},"private_options":{"Name":"LinuxStatus","Nodes":[{"Name":"Nested","Nodes":[{"Name":"Thing","Nodes":[{"Value":"eA==","Line":2}],"Line":2}],"Line":2}]}}' '{"id":2,"type":6,"key":"linux_status","parameters":["tcp_status","LISTEN"]}' '{"id":3,"type":6,"key":"linux_status","parameters":["tcp_summary"],"timeout":60}'
    emit '\x02' '{"id":4,"type":11}' 'not json' '{"id":5,"type":6,"parameters":[1]}' '{"type":4}'
    # An oversized header, and a non-JSON payload type.
    { printf '\x10\x01\x00\x00\x00\x01\x00\x10\x00{"id":9,"type":6,"key":"linux_status"}'; } >"$dir/seed-$i"; i=$((i + 1))
    { printf '\x00\x02\x00\x00\x00\x02\x00\x00\x00{}'; } >"$dir/seed-$i"; i=$((i + 1))
    echo "$i"
}

# config_parser input: one byte (even: a module configuration file; odd: agent 2's JSON tree
# for Plugins.LinuxStatus.*), then the text. Seeds: the shipped sample, each error kind, the
# hostile values of issue 16 (NUL, ESC, BOM, invalid UTF-8, a long value), agent 2 trees.
seed_config_parser() {
    local dir="$1" i=0
    emit() { printf "$1" >"$dir/seed-$i"; i=$((i + 1)); }
    { printf '\x00'; cat "$ROOT/conf/linux_status.conf.sample"; } >"$dir/seed-sample"; i=$((i + 1))
    emit '\x00Backend=netlink\nSnapshotLifetime=0\n'
    emit '\x00# c\n  Backend = proc  \n\nSnapshotLifetime=60000'
    emit '\x00Backend=ebpf\n'
    emit '\x00SnapshotLifetime=60001\nSnapshotLifetime=+5\nSnapshotLifetime=-1'
    emit '\x00NetnsTableInterval=0\nNetnsTableInterval=3600\nNetnsTableInterval=3601'
    emit '\x00Timeout=3\n'
    emit '\x00Backend\n'
    emit '\x00Backend=proc\x00\n'
    emit '\x00Backend=\x1b[2Jproc\n'
    emit '\x00\xef\xbb\xbfBackend=proc\n'
    emit '\x00Backend=\xff\xfe\n'
    { printf '\x00Backend='; head -c 20000 /dev/zero | tr '\0' A; } >"$dir/seed-long"; i=$((i + 1))
    emit '\x01{"Name":"LinuxStatus","Nodes":[{"Name":"Backend","Nodes":[{"Value":"bmV0bGluaw==","Line":12}],"Line":12}]}'
    emit '\x01{"Name":"LinuxStatus","Nodes":[{"Name":"SnapshotLifetime","Nodes":[{"Value":"MjUw","Line":3},{"Value":"LTE=","Line":4}],"Line":3},{"Name":"System","Nodes":[{"Name":"Path","Nodes":[{"Value":"L3g=","Line":1}],"Line":1}],"Line":1}]}'
    emit '\x01{"Name":"LinuxStatus","Nodes":[{"Name":"Backend","Nodes":[{"Value":"cHJvYwA=","Line":99999999}],"Line":1}]}'
    echo "$i"
}

# cgroup_path input: a /proc/<pid>/cgroup file (or a stat line). Seeds: every row of the
# pattern table (src/model/netns.rs), a cgroup v1 file, a stat line with an odd name.
seed_cgroup_path() {
    local dir="$1" i=0 hex=4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b
    emit() { printf '%s' "$1" >"$dir/seed-$i"; i=$((i + 1)); }
    emit "0::/system.slice/docker-$hex.scope"
    emit "0::/docker/$hex"
    emit "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c3d4e_0000_4000_8000_123456789abc.slice/cri-containerd-$hex.scope"
    emit "0::/kubepods.slice/kubepods-pod1b2c.slice/crio-$hex.scope"
    emit "0::/kubepods/burstable/pod1b2c3d4e-0000/$hex"
    emit "0::/machine.slice/libpod-$hex.scope/container"
    emit "0::/libpod_parent/$hex"
    emit "0::/libpod_parent/libpod-$hex"
    emit "0::/machine.slice/systemd-nspawn@deb12.service/payload"
    emit "0::/lxc.payload.web1/init.scope"
    emit "0::/lxc/web1"
    emit "0::/machine.slice/machine-deb12.scope/payload"
    emit "0::/system.slice/nginx.service"
    emit "0::/init.scope"
    emit "0::/"
    emit "$(printf '12:pids:/x\n1:name=systemd:/system.slice/b.service\n')"
    emit "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000"
    echo "$i"
}

failed=0
for target in "${RUN[@]}"; do
    corpus="$FUZZ_DIR/corpus/$target"
    seeds="$FUZZ_DIR/corpus/seeds-$target"
    artifacts="$FUZZ_DIR/artifacts/$target"
    out="$FUZZ_DIR/artifacts/$target.log"
    rm -rf "$seeds"
    mkdir -p "$corpus" "$seeds" "$artifacts"
    n="$("seed_$target" "$seeds")"
    log "$target: ${SECONDS_PER_TARGET} s, $n seeds, corpus $(find "$corpus" -type f | wc -l) inputs"
    max_len=4096
    [[ $target == proc_parser ]] && max_len=16384
    [[ $target == config_parser ]] && max_len=20480
    set +e
    # -timeout: one input taking > 10 s is a hang; the outer timeout is a last resort.
    timeout --signal=KILL "$((SECONDS_PER_TARGET + 120))" \
        "$BIN_DIR/$target" "$corpus" "$seeds" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -dict="$FUZZ_DIR/dict/$target.dict" -print_final_stats=1 \
        -artifact_prefix="$artifacts/" -error_exitcode=77 -timeout_exitcode=78 \
        >"$out" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$out" | tail -1)"
    cov_line="$(grep -E '^#[0-9]+.*cov: ' "$out" | tail -1 || true)"
    cov="$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$cov_line")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$cov_line")"
    corp="$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$cov_line")"
    if ((rc == 0)) && [[ -n "$execs" ]]; then
        log "$target: OK  execs=$execs exec/s=$rate cov=$cov ft=$ft corpus=$corp peak_rss=${rss}MB"
    else
        failed=1
        log "$target: FAILED (exit $rc) execs=${execs:-?} cov=${cov:-?}; log: $out"
        grep -E '^(==|INFO: Running|Test unit written|panicked|thread .* panicked)|SUMMARY|assert' "$out" | head -20 || true
        ls -1 "$artifacts" | sed 's/^/[fuzz]   artifact: /' || true
    fi
done
exit "$failed"
