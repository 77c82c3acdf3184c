#!/usr/bin/env python3
"""Load benchmark: the pass-through tax and the per-login cost, measured in one run.

Everything runs on loopback with one worker per proxy:
  origin   nginx (1 worker) serving a small 200 and the app's 302 to the AS authorize URL
  direct   wrk -> origin
  nginx    wrk -> nginx proxy (1 worker, keepalive upstream) -> origin
  sidecar  wrk -> par-sidecar (--threads 1) -> origin
  authz    wrk GET /login -> par-sidecar -> origin 302 -> PAR over mTLS to a fast local AS
           double (benches/as_double.rs, checks the client certificate) -> rewritten 302,
           for PS256, ES256 and EdDSA
  bare     wrk -> a bare pingora ProxyHttp (examples/bare_pingora.rs: the sidecar's ServerConf
           knobs, nothing else) -> origin, next to the sidecar at 50 and 1,000 connections:
           what the sidecar's own per-request work costs over pingora itself
  multi-AS sidecars configured with 1, 10 and 50 authorization servers (3 ASs in smoke mode),
           all served by the one AS double under distinct issuers https://127.0.0.1:PORT/bank-N:
           start time until /readyz lists every AS ready, RSS, and the pass-through and
           non-AS 302 cost of 1 vs 50 ASs
Runs are interleaved (A B C A B C ...) and reported as medians and ratios. Proxy CPU per
request comes from /proc/PID/stat (utime+stime) over the run; RSS from /proc/PID/status.

  python3 benches/load.py            # full run (~8 min), writes benches/results/latest.md
  python3 benches/load.py --smoke    # seconds; proves the benchmark still works (CI)
  python3 benches/load.py --only-signing [--bin PATH] [--baseline-bin PATH] [--compare NAME=PATH ...]
                                     # only the PS256 section: logins/s at 8 connections vs
                                     # cores / (2 x one RSA signature), and pass-through latency
                                     # at 1 connection alone and next to that login load
  python3 benches/load.py --only-authz [--bin PATH]
                                     # only logins with client.assertion_pool 0 vs 4 (PS256,
                                     # ES256, EdDSA; c1 and c8), writes benches/results/authz.md
  python3 benches/load.py --only-footprint [--baseline-bin PATH] [--jemalloc-bin PATH]
                                     # only the footprint section (1,000 connections, bursts,
                                     # connection flood); PATH: a landed-main build to compare;
                                     # --jemalloc-bin: a `--features jemalloc` build
  python3 benches/load.py --only-threads
                                     # sidecar --threads 1 and 2 against nginx with 1 and 2
                                     # worker processes, at 32 and 1,000 connections
  python3 benches/load.py --only-bare [--rounds N] [--bin PATH] [--bare-bin PATH]
                                     # only the sidecar vs bare pingora pass-through comparison
                                     # (c50 and c1000), writes benches/results/bare-pingora.md
  python3 benches/load.py --only-heap-profile --bin PATH
                                     # the sidecar under heaptrack at 1,000 connections: the top
                                     # allocation sites at the heap's peak, heap vs RSS, heap
                                     # after the bursts. PATH: a build with debug info, e.g.
                                     # CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_TARGET_DIR=target-dbg
                                     #   cargo build --release
Footprint section: 1,000-connection throughput and peak RSS, and pass-through CPU per request
at 32 connections, for the defaults, the previous 4 KiB read buffer, a jemalloc build and
landed main (a fresh sidecar per run); RSS after two bursts of 1,000 connections and 10 s and
30 s later, with and without the free-heap trim (limits.memory_trim_interval_ms); a
connection flood (max_connections + 3,000 idle and half-sent sockets) while logins keep
running on kept-alive connections.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = "--smoke" in sys.argv
DURATION = 1 if SMOKE else 6
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 1 if SMOKE else 3
CONNS = 32
TICK = os.sysconf("SC_CLK_TCK")
WORK = Path(tempfile.mkdtemp(prefix="par-sidecar-bench-"))
ONLY_FOOTPRINT = "--only-footprint" in sys.argv
ONLY_THREADS = "--only-threads" in sys.argv
ONLY_SIGNING = "--only-signing" in sys.argv
ONLY_AUTHZ = "--only-authz" in sys.argv  # only the assertion pool on/off login comparison
ONLY_HEAP_PROFILE = "--only-heap-profile" in sys.argv
ONLY_BARE = "--only-bare" in sys.argv  # only the sidecar vs bare pingora pass-through section
JEMALLOC_BIN = sys.argv[sys.argv.index("--jemalloc-bin") + 1] if "--jemalloc-bin" in sys.argv else None
BASELINE_BIN = sys.argv[sys.argv.index("--baseline-bin") + 1] if "--baseline-bin" in sys.argv else None
# --compare NAME=PATH (repeatable, --only-signing): more builds in the same interleaved rounds.
COMPARE_BINS = dict(sys.argv[i + 1].split("=", 1) for i, a in enumerate(sys.argv) if a == "--compare")
BIN_GIVEN = sys.argv[sys.argv.index("--bin") + 1] if "--bin" in sys.argv else None  # a prebuilt build to measure
BIN = Path(BIN_GIVEN or Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/par-sidecar")
# The bare pingora baseline (examples/bare_pingora.rs); --bare-bin: a prebuilt one.
BARE_BIN_GIVEN = sys.argv[sys.argv.index("--bare-bin") + 1] if "--bare-bin" in sys.argv else None
BARE_BIN = Path(BARE_BIN_GIVEN or Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/examples/bare_pingora")
BARE_CONNS = (50, 1000)
BARE_MIN_RATIO = 0.95  # issue 18: the sidecar keeps >= 0.95x of bare pingora's req/s
RUN_BARE = not (ONLY_FOOTPRINT or ONLY_THREADS or ONLY_SIGNING or ONLY_AUTHZ or ONLY_HEAP_PROFILE)
LOAD_AT_START = 0.0
procs = []


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(name, args, **kw):
    log = open(WORK / f"{name}.log", "w")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw)
    procs.append(p)
    return p


def wait_http(url, ok=lambda s: s < 500, timeout=30, curl_extra=()):
    end = time.time() + timeout
    while time.time() < end:
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *curl_extra, url], capture_output=True, text=True)
        if r.stdout.isdigit() and r.stdout != "000" and ok(int(r.stdout)):
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {url}")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def rss_kib(pids, field="VmRSS"):
    total = 0
    for pid in pids:
        m = re.search(rf"{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        total += int(m.group(1)) if m else 0
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def thread_ticks(pid):
    """CPU ticks per thread name of one process (trailing digits dropped: `par-signer-0` and
    `par-signer-1` count together)."""
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (t / "comm").read_text().strip()
            fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = re.sub(r"-?\d+$", "", comm)
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def sidecar_yaml(public, admin, origin_port, issuer, pki, key, alg, client="", limits="", timeouts=""):
    """The benchmark sidecar's config: one AS (the double), private_key_jwt with `key`.
    client: extra lines of the client block; limits/timeouts: extra flow-map entries."""
    return f"""
listen: {{ public: "127.0.0.1:{public}", admin: "127.0.0.1:{admin}" }}
upstream: "127.0.0.1:{origin_port}"
authorization_server: {{ issuer: "{issuer}", ca_file: "{pki}/ca.crt" }}
client:
  client_id: bench-app
  auth_method: private_key_jwt
  signing_key: {{ path: "{pki}/{key}", alg: {alg} }}
  transport: {{ cert_path: "{pki}/transport.crt", key_path: "{pki}/transport.key" }}
{client}
limits: {{ login_starts_per_second: 0{limits} }}  # the default 100/s would measure the limiter, not a login
# wrk reaches the sidecar as 127.0.0.1: the app's redirect_uri is on its public origin (an
# ingress that rewrites Host), so that origin is configured (issue 18 M4).
par: {{ redirect_uri_origins: ["https://app.example"] }}
{f"timeouts: {{ {timeouts} }}" if timeouts else ""}
logging: {{ level: warn }}
shutdown: {{ grace_period_seconds: 0 }}
"""


def renice(pid, nice):
    """Sets every thread of `pid` to `nice` (going back down needs root: then it stays)."""
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(t.name), nice)
        except OSError:
            pass


AS_DOUBLE = None


def wrk(url, pids, conns=CONNS, duration=DURATION):
    before = cpu_ticks(pids) if pids else 0
    out = sh("wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", url)
    after = cpu_ticks(pids) if pids else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return {
        "rps": rps,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "cpu_us_per_req": (after - before) / TICK * 1e6 / max(total, 1) if pids else None,
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def nginx_conf(path, port, body, workers=1):
    path.write_text(f"""
worker_processes {workers};
pid {path}.pid;
error_log {WORK}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {WORK}/nginx-tmp;
  proxy_temp_path {WORK}/nginx-tmp;
  fastcgi_temp_path {WORK}/nginx-tmp;
  uwsgi_temp_path {WORK}/nginx-tmp;
  scgi_temp_path {WORK}/nginx-tmp;
  keepalive_requests 1000000;
  {body}
}}
""")


def median(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


MULTI_AS_COUNTS = (1, 3) if SMOKE else (1, 10, 50)
START_REPEATS = 1 if SMOKE else 3


def admin_get(port, path, timeout=0.5):
    """(status, body) of one admin request, or None while the port is not answering."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    except OSError:
        return None
    finally:
        c.close()


def multi_as_config(n, origin_port, issuer, pki):
    public, admin = free_port(), free_port()
    banks = "\n".join(f'  - {{ name: bank-{i}, issuer: "{issuer}/bank-{i}", ca_file: "{pki}/ca.crt" }}' for i in range(1, n + 1))
    cfg = WORK / f"sidecar-{n}-as.yaml"
    cfg.write_text(f"""
listen: {{ public: "127.0.0.1:{public}", admin: "127.0.0.1:{admin}" }}
upstream: "127.0.0.1:{origin_port}"
client:
  client_id: bench-app
  auth_method: private_key_jwt
  signing_key: {{ path: "{pki}/sign-es256.pem", alg: ES256 }}
  transport: {{ cert_path: "{pki}/transport.crt", key_path: "{pki}/transport.key" }}
authorization_servers:
{banks}
limits: {{ login_starts_per_second: 0 }}
logging: {{ level: warn }}
shutdown: {{ grace_period_seconds: 0 }}
""")
    return cfg, public, admin


def start_multi_as(n, cfg, admin, timeout=60):
    """Spawns the sidecar and polls /readyz every 20 ms until every one of the n ASs is
    listed ready. Returns the process and the times (s since spawn) at which the admin port
    first answered, the first AS was ready (/readyz 200) and all n were ready."""
    names = {f"bank-{i}" for i in range(1, n + 1)}
    t0 = time.monotonic()
    p = start(f"sidecar-{n}-as", [str(BIN), "run", "--threads", "1", "--config", str(cfg)])
    answered = first = None
    while time.monotonic() - t0 < timeout:
        r = admin_get(admin, "/readyz")
        now = time.monotonic() - t0
        if r is not None:
            answered = answered if answered is not None else now
            status, body = r
            if status == 200 and first is None:
                first = now
            ready = {l.split(":", 1)[0] for l in body.splitlines() if l.endswith(": ready")}
            if status == 200 and names <= ready:
                return p, {"answered_s": answered, "first_s": first, "all_s": now}
        if p.poll() is not None:
            raise SystemExit(f"par-sidecar with {n} ASs exited: {(WORK / f'sidecar-{n}-as.log').read_text()[-2000:]}")
        time.sleep(0.02)
    raise SystemExit(f"par-sidecar with {n} ASs: not every AS ready after {timeout} s: {r}")


def multi_as_section(origin_port, issuer, pki):
    """Start time and memory with 1, 10, 50 ASs; per-request cost of 1 vs the most ASs."""
    starts = {n: [] for n in MULTI_AS_COUNTS}
    running = {}
    for rep in range(START_REPEATS):  # interleaved: 1, 10, 50, 1, 10, 50, ...
        for n in MULTI_AS_COUNTS:
            cfg, public, admin = multi_as_config(n, origin_port, issuer, pki)
            p, t = start_multi_as(n, cfg, admin)
            t["rss_ready_kib"] = rss_kib([p.pid])
            starts[n].append(t)
            if rep == START_REPEATS - 1:
                running[n] = (p, public)
            else:
                p.send_signal(signal.SIGKILL)
                p.wait()
    few, many = MULTI_AS_COUNTS[0], MULTI_AS_COUNTS[-1]
    paths = {"pass": "/", "elsewhere": "/elsewhere", "as-host": "/as-host"}
    runs = {f"{kind}-{n}": [] for kind in paths for n in (few, many)}
    # The same short load on every config (1 s per path, also the warm-up): "RSS after load".
    for n, (p, public) in running.items():
        for kind, path in paths.items():
            wrk(f"http://127.0.0.1:{public}{path}", [p.pid], duration=1)
    rss_after = {n: rss_kib([p.pid]) for n, (p, _) in running.items()}
    for rnd in range(ROUNDS):
        for kind, path in paths.items():
            order = (few, many) if rnd % 2 == 0 else (many, few)
            for n in order:
                p, public = running[n]
                runs[f"{kind}-{n}"].append(wrk(f"http://127.0.0.1:{public}{path}", [p.pid]))
    rss_end = {n: rss_kib([running[n][0].pid]) for n in (few, many)}
    hwm = {n: rss_kib([running[n][0].pid], "VmHWM") for n in (few, many)}
    for p, _ in running.values():
        p.send_signal(signal.SIGKILL)
        p.wait()
    return {"starts": starts, "runs": runs, "rss_after_kib": rss_after, "rss_end_kib": rss_end, "hwm_kib": hwm,
            "few": few, "many": many}


def multi_as_report(m):
    few, many = m["few"], m["many"]
    lines = [
        "",
        "## Several authorization servers: start time and memory",
        "",
        f"One sidecar (`--threads 1`, ES256, private_key_jwt) configured with N ASs in the `authorization_servers:` form "
        f"(N = {', '.join(str(n) for n in MULTI_AS_COUNTS)}). All N are served by the one AS double process under distinct "
        "issuers `https://127.0.0.1:PORT/bank-i` (discovery at `/bank-i/.well-known/openid-configuration`, "
        "authorize at `/bank-i/authorize`), so every AS is a separate discovery load, HTTP pool and mTLS handshake, "
        "but all share one host (a worst case for the host index used by redirect detection).",
        "",
        f"Start time: from spawning `par-sidecar run` until `/readyz` lists every AS `ready` (polled every 20 ms); "
        f"median of {START_REPEATS} start(s), interleaved across N. RSS is VmRSS once all are ready (median over the starts), and "
        f"after the same short load on every config (wrk -c{CONNS}, 1 s on each of the three paths of the table below).",
        "",
        "| ASs | admin answers ms | first AS ready ms | all ready ms | RSS all ready MiB | RSS after load MiB |",
        "|---|---|---|---|---|---|",
    ]
    for n, ts in m["starts"].items():
        med_ = {k: statistics.median(t[k] for t in ts) for k in ("answered_s", "first_s", "all_s", "rss_ready_kib")}
        lines.append(f"| {n} | {med_['answered_s'] * 1000:.0f} | {med_['first_s'] * 1000:.0f} | {med_['all_s'] * 1000:.0f} | "
                     f"{med_['rss_ready_kib'] / 1024:.1f} | {m['rss_after_kib'][n] / 1024:.1f} |")
    ready = {n: statistics.median(t["rss_ready_kib"] for t in ts) for n, ts in m["starts"].items()}
    per_as = (ready[many] - ready[few]) / (many - few)
    per_as_after = (m["rss_after_kib"][many] - m["rss_after_kib"][few]) / (many - few)
    lines += [
        "",
        f"Marginal RSS per extra AS: {per_as:.0f} KiB once ready, {per_as_after:.0f} KiB after load ({few} -> {many} ASs). "
        f"After all the runs below: RSS {m['rss_end_kib'][few] / 1024:.1f} MiB ({few} AS) vs {m['rss_end_kib'][many] / 1024:.1f} MiB "
        f"({many} ASs), peak {m['hwm_kib'][few] / 1024:.1f} vs {m['hwm_kib'][many] / 1024:.1f} MiB.",
        "",
        f"Per-request cost with {few} vs {many} ASs (wrk -c{CONNS}, {ROUNDS} interleaved round(s) of {DURATION} s, medians; "
        f"ratios are {many} ASs / {few} AS). `302 elsewhere`: the app redirects to `https://www.example.org/...`, "
        f"a host no AS is on (a host-index miss). `302 AS host`: it redirects to `https://127.0.0.1:PORT/bank-1/logout`, "
        f"the host all {many} ASs share, so every candidate on that host is compared by path. Both pass through unchanged.",
        "",
        f"| path | req/s ({few} AS) | req/s ({many} ASs) | req/s ratio | CPU us/req ({few}) | CPU us/req ({many}) | CPU ratio | p99 ms ({few} / {many}) | non-2xx/3xx |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {"pass": "pass-through 200", "elsewhere": "302 elsewhere", "as-host": "302 AS host"}
    for kind, label in labels.items():
        a, b = m["runs"][f"{kind}-{few}"], m["runs"][f"{kind}-{many}"]
        ra, rb = median(a, "rps"), median(b, "rps")
        ca, cb = median(a, "cpu_us_per_req"), median(b, "cpu_us_per_req")
        errs = sum(r["errors"] for r in a + b)
        lines.append(f"| {label} | {ra:.0f} | {rb:.0f} | {rb / ra:.2f} | {ca:.1f} | {cb:.1f} | {cb / ca:.2f} | "
                     f"{median(a, 'p99_ms'):.2f} / {median(b, 'p99_ms'):.2f} | {errs} |")
    return lines

# --- Footprint: many connections, bursts, floods -------------------------------------------
FLOOD_CAP = 100 if SMOKE else 2048          # limits.max_connections (2048 is the default)
FLOOD_EXTRA = 200 if SMOKE else 3000        # sockets beyond the cap
HEADER_TIMEOUT_MS = 1000 if SMOKE else 10000  # timeouts.first_request_headers_ms (default)
BURST_S = 1 if SMOKE else 5
IDLE_S = (1, 2) if SMOKE else (10, 30)
C1000_S = 1 if SMOKE else 5


def admin_metric(port, name):
    r = admin_get(port, "/metrics", timeout=2)
    if not r:
        return None
    m = re.search(rf"^{name} (\S+)$", r[1], re.M)
    return float(m.group(1)) if m else None


def admin_metric_sum(port, name):
    """The sum of every series of `name` (labelled or not), None when it has none."""
    r = admin_get(port, "/metrics", timeout=2)
    if not r:
        return None
    vals = re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", r[1], re.M)
    return sum(float(v) for v in vals) if vals else None


def metric_or_dash(v):
    return "-" if v is None else f"{v:.0f}"


def rss_mib(p, field="VmRSS"):
    return rss_kib([p.pid], field) / 1024


def flood(sidecar, binary, cap):
    """Logins run on 4 kept-alive connections while cap + FLOOD_EXTRA sockets connect (half
    send nothing, half a partial request line and header); RSS is sampled until the header
    deadline has passed; then how soon a new connection gets a login again."""
    import resource
    import threading
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limits = f", max_connections: {cap}" if binary is None else ""
    timeouts = f"first_request_headers_ms: {HEADER_TIMEOUT_MS}" if binary is None else ""
    p, port = sidecar("ES256", "sign-es256.pem", limits=limits, timeouts=timeouts, binary=binary, tag=f"-flood{binary is not None}")
    wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=4, duration=1)
    rss0 = rss_mib(p)
    hold = HEADER_TIMEOUT_MS / 1000 + 3
    res = {}
    t = threading.Thread(target=lambda: res.update(wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=4, duration=int(hold + 1))))
    t.start()
    time.sleep(0.5)  # wrk's connections are open (and kept alive) before the flood
    socks = []
    t0 = time.monotonic()
    for i in range(cap + FLOOD_EXTRA):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except (BlockingIOError, InterruptedError):
            pass
        socks.append(s)
    time.sleep(0.3)
    for i, s in enumerate(socks):
        if i % 2:
            try:
                s.send(b"GET /login HTTP/1.1\r\nHost: app.example\r\nX-Slow: ")
            except OSError:
                pass
    peak = 0.0
    served_again = None
    while time.monotonic() - t0 < hold:
        peak = max(peak, rss_mib(p))
        if served_again is None:
            r = subprocess.run(["curl", "-s", "-m", "0.5", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/login"],
                               capture_output=True, text=True)
            if r.stdout == "302":
                served_again = time.monotonic() - t0
        time.sleep(0.25)
    t.join()
    open_now = 0
    for s in socks:
        try:
            open_now += 0 if s.recv(1) == b"" else 1
        except BlockingIOError:
            open_now += 1
        except OSError:
            pass
        s.close()
    out = {
        "rss_before": rss0, "rss_peak": max(peak, rss_mib(p)), "hwm": rss_mib(p, "VmHWM"),
        # Non-2xx/3xx logins. wrk's socket errors are counted apart: at the cap the sidecar
        # closes the oldest idle connections (issue 18 M2), wrk's keep-alive ones between two
        # requests included; a browser retries those on a new connection.
        "logins_rps": res["rps"], "login_errors": res["errors"],
        "evicted": admin_metric_sum(p.admin_port, "par_sidecar_connections_evicted_total"),
        "socket_errors": res["socket_errors"], "flood_open_at_end": open_now, "served_again_s": served_again,
        "refused": admin_metric(p.admin_port, "par_sidecar_connections_refused_total"),
        "header_timeouts": admin_metric(p.admin_port, "par_sidecar_first_request_header_timeouts_total"),
    }
    time.sleep(1)
    out["rss_after"] = rss_mib(p)
    out["open_gauge_after"] = admin_metric(p.admin_port, "par_sidecar_connections_open")
    p.send_signal(signal.SIGKILL)
    p.wait()
    return out


def c1000_run(sidecar, name, limits, binary=None):
    """A fresh sidecar: 1 s warm-up and a DURATION run at c32 (CPU per request), then
    C1000_S s at c1000 (req/s, p99, peak RSS)."""
    p, port = sidecar("ES256", "sign-es256.pem", limits=limits, binary=binary, tag=f"-c1000-{len(limits)}{binary is not None}")
    wrk(f"http://127.0.0.1:{port}/", [p.pid], duration=1)
    c32 = wrk(f"http://127.0.0.1:{port}/", [p.pid])
    r = wrk(f"http://127.0.0.1:{port}/", [p.pid], conns=1000, duration=C1000_S)
    r["hwm_mib"] = rss_mib(p, "VmHWM")
    r["c32_rps"], r["c32_cpu_us"] = c32["rps"], c32["cpu_us_per_req"]
    p.send_signal(signal.SIGKILL)
    p.wait()
    return r


def bursts(sidecar, binary=None, tag="", limits=""):
    p, port = sidecar("ES256", "sign-es256.pem", binary=binary, tag=f"-bursts{tag}", limits=limits)
    wrk(f"http://127.0.0.1:{port}/", [p.pid], duration=1)
    row = {"idle": rss_mib(p)}
    for i in (1, 2):
        wrk(f"http://127.0.0.1:{port}/", [p.pid], conns=1000, duration=BURST_S)
        row[f"burst{i}"] = rss_mib(p)
    time.sleep(IDLE_S[0])
    row["idle_a"] = rss_mib(p)
    time.sleep(IDLE_S[1] - IDLE_S[0])
    row["idle_b"] = rss_mib(p)
    row["hwm"] = rss_mib(p, "VmHWM")
    p.send_signal(signal.SIGKILL)
    p.wait()
    return row


def footprint_section(sidecar):
    # name -> (extra limits, binary); None: the build under test
    configs = {
        "defaults now (read buffer off, glibc + free-heap trim)": ("", None),
        "read buffer 4 KiB (previous default)": (", connection_read_buffer_bytes: 4096", None),
    }
    if JEMALLOC_BIN:
        configs["jemalloc build (read buffer off)"] = (", connection_read_buffer_bytes: 0", JEMALLOC_BIN)
    if BASELINE_BIN:
        configs["landed main"] = ("", BASELINE_BIN)
    if SMOKE:  # CI: one run proves the section works
        configs = {k: v for k, v in configs.items() if "defaults now" in k}
    runs = {k: [] for k in configs}
    for rnd in range(ROUNDS):
        names = list(runs) if rnd % 2 == 0 else list(reversed(runs))
        for name in names:
            limits, binary = configs[name]
            runs[name].append(c1000_run(sidecar, name, limits, binary=binary))
    burst_rows = {"defaults now (glibc + trim)": bursts(sidecar)}
    if not SMOKE:
        burst_rows["glibc, trim off (memory_trim_interval_ms: 0)"] = bursts(sidecar, tag="-notrim", limits=", memory_trim_interval_ms: 0")
        if JEMALLOC_BIN:
            burst_rows["jemalloc build"] = bursts(sidecar, binary=JEMALLOC_BIN, tag="-jemalloc", limits=", connection_read_buffer_bytes: 0")
    if BASELINE_BIN:
        burst_rows["landed main"] = bursts(sidecar, binary=BASELINE_BIN, tag="-main")
    ps256 = {"new": []}
    if BASELINE_BIN:
        ps256["landed main"] = []
    for rnd in range(ROUNDS):  # PS256 login start at 1 connection: one signature or two on the critical path
        for name in (list(ps256) if rnd % 2 == 0 else list(reversed(ps256))):
            p, port = sidecar("PS256", "sign-ps256.pem", binary=BASELINE_BIN if name == "landed main" else None, tag=f"-c1-{rnd}{name[0]}")
            wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=1, duration=1)
            ps256[name].append(wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=1))
            p.send_signal(signal.SIGKILL)
            p.wait()
    floods = {"new": flood(sidecar, None, FLOOD_CAP)}
    if BASELINE_BIN:
        floods["landed main"] = flood(sidecar, BASELINE_BIN, FLOOD_CAP)
    return {"c1000": runs, "bursts": burst_rows, "flood": floods, "ps256": ps256}


def footprint_report(fp):
    lines = [
        "",
        "## Footprint: 1,000 connections, bursts, connection floods",
        "",
        f"`--threads 1`, ES256 config, pass-through `/`. A fresh sidecar per run: 1 s warm-up, then wrk -t1 -c{CONNS} for "
        f"{DURATION} s (CPU per request), then wrk -t1 -c1000 for {C1000_S} s; {ROUNDS} interleaved round(s), medians; "
        "peak RSS is VmHWM of that run.",
        "",
        f"| sidecar | req/s (c1000) | p99 ms (c1000) | peak RSS MiB (c1000) | req/s (c{CONNS}) | CPU us/req (c{CONNS}) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in fp["c1000"].items():
        lines.append(f"| {name} | {median(rows, 'rps'):.0f} | {median(rows, 'p99_ms'):.2f} | {median(rows, 'hwm_mib'):.1f} | "
                     f"{median(rows, 'c32_rps'):.0f} | {median(rows, 'c32_cpu_us'):.1f} |")
    lines += [
        "",
        f"PS256 login start at 1 connection (wrk -c1 `/login`, {DURATION} s, {ROUNDS} interleaved round(s), a fresh sidecar each, medians):",
        "",
        "| sidecar | logins/s | p50 ms | p99 ms | non-3xx |",
        "|---|---|---|---|---|",
    ]
    for name, rows in fp["ps256"].items():
        lines.append(f"| {name} | {median(rows, 'rps'):.0f} | {median(rows, 'p50_ms'):.3f} | {median(rows, 'p99_ms'):.3f} | {sum(r['errors'] for r in rows)} |")
    lines += [
        "",
        f"Retained memory: VmRSS after a 1 s warm-up (c32), after each of two {BURST_S} s bursts of 1,000 connections, "
        f"then {IDLE_S[0]} s and {IDLE_S[1]} s after the second burst ended.",
        "",
        f"| sidecar | warm MiB | after burst 1 | after burst 2 | +{IDLE_S[0]} s idle | +{IDLE_S[1]} s idle | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in fp["bursts"].items():
        lines.append(f"| {name} | {r['idle']:.1f} | {r['burst1']:.1f} | {r['burst2']:.1f} | {r['idle_a']:.1f} | {r['idle_b']:.1f} | {r['hwm']:.1f} |")
    lines += [
        "",
        f"Connection flood: 4 kept-alive wrk connections run logins (`GET /login` -> PAR, ES256) while "
        f"{FLOOD_CAP} + {FLOOD_EXTRA} sockets connect (half send nothing, half a partial request), held "
        f"{HEADER_TIMEOUT_MS / 1000 + 3:.0f} s. New build: `limits.max_connections: {FLOOD_CAP}`, "
        f"`timeouts.first_request_headers_ms: {HEADER_TIMEOUT_MS}`. `served again`: seconds from the flood's start until a "
        "new connection got a login 302 (curl polled every 0.25 s while the flood's sockets stay open).",
        "",
        "| sidecar | RSS before MiB | peak RSS MiB | RSS 1 s after close | logins/s during | login errors | wrk socket errors | refused at accept | evicted idle | header timeouts | flood sockets still open at end | served again s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in fp["flood"].items():
        again = "-" if f["served_again_s"] is None else f"{f['served_again_s']:.1f}"
        lines.append(f"| {name} | {f['rss_before']:.1f} | {f['rss_peak']:.1f} | {f['rss_after']:.1f} | {f['logins_rps']:.0f} | "
                     f"{f['login_errors']} | {f['socket_errors'] or '-'} | {metric_or_dash(f['refused'])} | "
                     f"{metric_or_dash(f.get('evicted'))} | {metric_or_dash(f['header_timeouts'])} | "
                     f"{f['flood_open_at_end']} | {again} |")
    return lines


def threads_section(sidecar, nginx, origin_port):
    """Proxies with 1 and 2 workers (sidecar --threads N; nginx worker_processes N), a fresh
    process per run: 1 s warm-up, DURATION s at c32, then C1000_S s at c1000. Peak RSS is
    VmHWM after each load (nginx: the sum over its workers)."""
    runs = {}
    for n in (1, 2):
        runs[f"nginx, {n} worker(s)"] = []
        runs[f"sidecar, --threads {n}"] = []
    for rnd in range(ROUNDS):
        for name in (list(runs) if rnd % 2 == 0 else list(reversed(runs))):
            n = int(re.search(r"(\d)", name).group(1))
            if name.startswith("nginx"):
                port = free_port()
                conf = WORK / f"proxy-threads-{n}-{rnd}.conf"
                nginx_conf(conf, port, f"""
  upstream app {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""", workers=n)
                p = start(f"nginx-threads-{n}-{rnd}", [nginx, "-c", str(conf), "-g", "daemon off;"])
                wait_http(f"http://127.0.0.1:{port}/")
                time.sleep(0.2)
                pids = children(p.pid)
            else:
                p, port = sidecar("ES256", "sign-es256.pem", tag=f"-threads{n}-{rnd}", threads=n)
                pids = [p.pid]
            url = f"http://127.0.0.1:{port}/"
            wrk(url, pids, duration=1)
            row = {}
            r = wrk(url, pids)
            row.update(c32_rps=r["rps"], c32_p99=r["p99_ms"], c32_hwm=rss_kib(pids, "VmHWM") / 1024, c32_cpu=r["cpu_us_per_req"])
            r = wrk(url, pids, conns=1000, duration=C1000_S)
            row.update(c1000_rps=r["rps"], c1000_p99=r["p99_ms"], c1000_hwm=rss_kib(pids, "VmHWM") / 1024)
            runs[name].append(row)
            p.send_signal(signal.SIGKILL if name.startswith("sidecar") else signal.SIGQUIT)
            p.wait()
    return runs


def threads_report(runs):
    lines = [
        "",
        "## Workers: sidecar --threads 1 and 2 against nginx worker_processes 1 and 2",
        "",
        f"Pass-through `/`, a fresh proxy per run: 1 s warm-up, wrk -t1 -c{CONNS} for {DURATION} s, then wrk -t1 -c1000 for "
        f"{C1000_S} s; {ROUNDS} interleaved round(s), medians. Peak RSS: VmHWM after that load (nginx: sum over its workers, "
        f"master not counted). The machine has {os.cpu_count()} cores shared by wrk (one thread), the origin nginx (one "
        "worker) and the proxy, so 2 proxy workers compete with the load generator.",
        "",
        f"| proxy | req/s (c{CONNS}) | p99 ms (c{CONNS}) | CPU us/req (c{CONNS}) | peak RSS MiB (c{CONNS}) | req/s (c1000) | p99 ms (c1000) | peak RSS MiB (c1000) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in runs.items():
        m = {k: median(rows, k) for k in rows[0]}
        lines.append(f"| {name} | {m['c32_rps']:.0f} | {m['c32_p99']:.2f} | {m['c32_cpu']:.1f} | {m['c32_hwm']:.1f} | "
                     f"{m['c1000_rps']:.0f} | {m['c1000_p99']:.2f} | {m['c1000_hwm']:.1f} |")
    for n in (1, 2):
        ng, sc = runs[f"nginx, {n} worker(s)"], runs[f"sidecar, --threads {n}"]
        lines.append(f"\n{n} worker(s): sidecar/nginx req/s {median(sc, 'c32_rps') / median(ng, 'c32_rps'):.2f} at c{CONNS}, "
                     f"{median(sc, 'c1000_rps') / median(ng, 'c1000_rps'):.2f} at c1000.")
    return lines


def bare_section(sidecar, origin_port):
    """The sidecar against a bare pingora ProxyHttp with the same ServerConf knobs, both
    `--threads 1`, both started once: a 1 s warm-up each, then ROUNDS interleaved rounds of
    DURATION s at every BARE_CONNS (bare, sidecar; the next round sidecar, bare). Peak RSS is
    VmHWM after all runs (the c1000 runs set it)."""
    port = free_port()
    bare = start("bare-pingora", [str(BARE_BIN), f"127.0.0.1:{port}", f"127.0.0.1:{origin_port}", "1"])
    wait_http(f"http://127.0.0.1:{port}/", ok=lambda s: s == 200)
    sc, sc_port = sidecar("ES256", "sign-es256.pem", tag="-vs-bare")
    targets = {"bare pingora": (f"http://127.0.0.1:{port}/", [bare.pid]),
               "sidecar": (f"http://127.0.0.1:{sc_port}/", [sc.pid])}
    for url, pids in targets.values():
        wrk(url, pids, conns=BARE_CONNS[0], duration=1)
    runs = {(name, c): [] for name in targets for c in BARE_CONNS}
    for rnd in range(ROUNDS):
        for c in BARE_CONNS:
            for name in (list(targets) if rnd % 2 == 0 else list(reversed(targets))):
                url, pids = targets[name]
                runs[(name, c)].append(wrk(url, pids, conns=c))
    hwm = {name: rss_kib(pids, "VmHWM") / 1024 for name, (_, pids) in targets.items()}
    for p in (bare, sc):
        p.send_signal(signal.SIGKILL)
        p.wait()
    return {"runs": runs, "hwm": hwm}


def bare_report(b):
    """The table of bare_section; ratios are sidecar / bare pingora, per round (adjacent runs)
    and of the medians."""
    runs = b["runs"]
    lines = [
        "",
        "## Sidecar vs bare pingora (pass-through)",
        "",
        "The same origin behind `par-sidecar run --threads 1` (ES256 config, one AS) and behind "
        "`examples/bare_pingora.rs`: a pingora `ProxyHttp` that only forwards, with the ServerConf knobs "
        "of `src/server.rs` (threads 1, `work_stealing: false`, upstream keepalive pool 1024, no read "
        "buffer, grace 0 / 5 s, glibc malloc). Both started once, 1 s warm-up each, then "
        f"{ROUNDS} interleaved round(s) of wrk -t1 for {DURATION} s at {' and '.join(f'-c{c}' for c in BARE_CONNS)}; "
        "medians. CPU: utime+stime of the whole proxy process over the run, per request. Ratios are "
        "sidecar / bare; `per round` is the range of the ratios of the two adjacent runs of each round. "
        f"Target (issue 18): sidecar req/s >= {BARE_MIN_RATIO:.2f}x bare pingora at each connection count.",
        "",
        "| connections | bare req/s | sidecar req/s | req/s ratio | per round | bare CPU us/req | sidecar CPU us/req | CPU ratio | p99 ms bare / sidecar | non-2xx | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in BARE_CONNS:
        a, s = runs[("bare pingora", c)], runs[("sidecar", c)]
        ra, rs = median(a, "rps"), median(s, "rps")
        ca, cs = median(a, "cpu_us_per_req"), median(s, "cpu_us_per_req")
        per_round = [y["rps"] / x["rps"] for x, y in zip(a, s)]
        errs = sum(r["errors"] for r in a + s)
        lines.append(f"| {c} | {ra:.0f} | {rs:.0f} | {rs / ra:.2f} | {min(per_round):.2f}-{max(per_round):.2f} | "
                     f"{ca:.1f} | {cs:.1f} | {cs / ca:.2f} | {median(a, 'p99_ms'):.2f} / {median(s, 'p99_ms'):.2f} | {errs} | "
                     f"{'- (smoke)' if SMOKE else 'met' if rs / ra >= BARE_MIN_RATIO else 'NOT met'} |")
    lines += ["", f"Peak RSS (VmHWM after all runs): bare pingora {b['hwm']['bare pingora']:.1f} MiB, "
                  f"sidecar {b['hwm']['sidecar']:.1f} MiB."]
    return lines


def bare_smoke_errors(b):
    """What a smoke run must not see: a failed or empty run of either proxy."""
    return [f"bare section {name} c{c}: {r}" for (name, c), rows in b["runs"].items() for r in rows
            if r["errors"] or r["rps"] <= 0]


HEAP_SITES = 14


def heap_profile_section(sidecar_cfg_for):
    """The sidecar under heaptrack: warm-up, two C1000_S s bursts of 1,000 connections,
    5 s idle, SIGTERM. Returns the report lines."""
    heaptrack, printer = shutil.which("heaptrack"), shutil.which("heaptrack_print")
    if not heaptrack or not printer:
        raise SystemExit("heaptrack is required (apt-get install heaptrack)")
    cfg, port, admin = sidecar_cfg_for()
    out = WORK / "heap"
    p = start("sidecar-heaptrack", [heaptrack, "-o", str(out), str(BIN), "run", "--threads", "1", "--config", str(cfg)])
    wait_http(f"http://127.0.0.1:{admin}/readyz", ok=lambda s: s == 200, timeout=60)
    pid = int(subprocess.run(["pgrep", "-f", f"^{BIN} run"], capture_output=True, text=True).stdout.split()[0])
    url = f"http://127.0.0.1:{port}/"
    wrk(url, [], duration=1)
    rss = {"warm": rss_kib([pid]) / 1024}
    for i in (1, 2):
        r = wrk(url, [], conns=1000, duration=C1000_S)
        rss[f"burst{i}"] = rss_kib([pid]) / 1024
        rss[f"rps{i}"] = r["rps"]
    time.sleep(5)
    rss["idle"] = rss_kib([pid]) / 1024
    rss["hwm"] = rss_kib([pid], "VmHWM") / 1024
    os.kill(pid, signal.SIGTERM)
    p.wait(timeout=60)
    data = next(WORK.glob("heap*.zst"))
    text = subprocess.run([printer, "-f", str(data), "--print-peaks", "1", "--print-allocators", "0", "--print-temporary", "0",
                           "--print-leaks", "0", "--peak-limit", "60", "--sub-peak-limit", "12"], capture_output=True, text=True).stdout
    summary = subprocess.run([printer, "-f", str(data), "--print-peaks", "0", "--print-allocators", "0", "--print-temporary", "0",
                              "--print-leaks", "0", "-M", str(WORK / "massif.txt")], capture_output=True, text=True).stdout
    peak_heap = re.search(r"peak heap memory consumption: (\S+)", summary).group(1)
    snaps = re.findall(r"^time=([\d.]+)\nmem_heap_B=(\d+)", (WORK / "massif.txt").read_text(), re.M)
    end_heap = int(snaps[-1][1]) / 1e6 if snaps else float("nan")
    lines = [
        "",
        "## Heap profile at 1,000 connections (heaptrack)",
        "",
        f"`par-sidecar --threads 1` (pass-through, ES256 config) under heaptrack: 1 s at c{CONNS}, two {C1000_S} s bursts of "
        f"wrk -t1 -c1000 (under heaptrack: {rss['rps1']:.0f} and {rss['rps2']:.0f} req/s), 5 s idle, SIGTERM. "
        f"Heap at its peak: {peak_heap}; RSS peak {rss['hwm']:.1f} MiB (heaptrack's own overhead included); RSS warm "
        f"{rss['warm']:.1f}, after the bursts {rss['burst1']:.1f} / {rss['burst2']:.1f}, 5 s later {rss['idle']:.1f} MiB; heap still "
        f"in use after the bursts (last snapshot before shutdown): {end_heap:.1f} MB.",
        "",
        "Top allocation sites at the heap's peak (bytes live at that moment; `calls`: allocations from that site over the run; "
        "site: the first frames outside std/tokio/bytes/async-trait):",
        "",
        "| bytes at peak | calls | site |",
        "|---|---|---|",
    ]
    for size, calls, frames in heap_sites(text)[:HEAP_SITES]:
        lines.append(f"| {size} | {calls} | {' <- '.join(frames)} |")
    return lines


def heap_sites(text):
    """(bytes, calls, frames) per backtrace of heaptrack_print's peak section, largest first."""
    boring = ("/library/", "tokio-1.", "bytes-1.", "futures-", "hashbrown", "nptl", "sysdeps", "pingora-timeout", "async-trait")
    body = text.split("PEAK MEMORY CONSUMERS", 1)[-1]
    lines = body.split("\n")
    rows, cur = [], None
    for i, l in enumerate(lines):
        m = re.match(r"^([\d.]+[KMG]?B?) consumed over (\d+) calls from:", l)
        if m:
            cur = [m.group(1), int(m.group(2)), []]
            rows.append(cur)
            continue
        if re.match(r"^[\d.]+[KMG]?B? peak memory", l):
            cur = None
            continue
        t = l.strip()
        if cur is None or not t.startswith("at ") or len(cur[2]) >= 2:
            continue
        path = re.sub(r"^/root/.cargo/registry/src/[^/]+/|^.*/registry/src/[^/]+/", "", t[3:])
        if any(b in path for b in boring):
            continue
        fn = re.sub(r"::h[0-9a-f]{16}$", "", lines[i - 1].strip())
        for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$u7b$", "{"), ("$u7d$", "}"), ("..", "::"), ("$C$", ","), ("$RF$", "&")):
            fn = fn.replace(a, b)
        fn = re.sub(r"::_?\{\{closure\}\}", "", fn)
        fn = fn if len(fn) <= 60 else "..." + fn[-57:]
        cur[2].append(f"`{fn}` ({path})")

    def size(v):
        v = v.rstrip("B")
        return float(v[:-1]) * {"K": 1e3, "M": 1e6, "G": 1e9}[v[-1]] if v[-1] in "KMG" else float(v)
    rows.sort(key=lambda r: -size(r[0]))
    return [(f"{size(r[0]) / 1e6:.2f} MB", r[1], r[2]) for r in rows]


def rsa2048_sign_us():
    """One RSA-2048 signature on this machine, from `openssl speed` (what the issue's target uses)."""
    out = sh("openssl", "speed", "-mr", "-seconds", "1" if SMOKE else "3", "rsa2048")
    # -mr (OpenSSL 3): "+F2:<n>:<bits>:<signs per second>:<verifies per second>"
    m = re.search(r"\+F2:\d+:2048:([\d.e+-]+):", out)
    return 1e6 / float(m.group(1))


def signing_section(sidecar, builds):
    """PS256 logins on every core without starving the proxy: login throughput at 8 concurrent
    against what the machine's cores can sign (two RSA signatures per login), and pass-through
    latency at 1 connection with and without that login load next to it. `builds`: name ->
    binary (None: the one under test), measured in interleaved rounds."""
    sig_us = rsa2048_sign_us()
    cores = os.cpu_count()
    capacity = cores / (2 * sig_us / 1e6)
    rows = {name: [] for name in builds}
    for rnd in range(ROUNDS):
        for name in (list(builds) if rnd % 2 == 0 else list(reversed(builds))):
            p, port = sidecar("PS256", "sign-ps256.pem", binary=builds[name], tag=f"-signing-{rnd}")
            base = f"http://127.0.0.1:{port}"
            wrk(f"{base}/login", [p.pid], conns=8, duration=1)  # warm-up: pools filled
            t0 = thread_ticks(p.pid)
            alone = wrk(f"{base}/login", [p.pid], conns=8)
            t1 = thread_ticks(p.pid)
            logins = alone["rps"] * DURATION
            # CPU of the proxy's own event loop (pingora's `public` service threads) per login.
            proxy_us = (t1.get("public", 0) - t0.get("public", 0)) / TICK * 1e6 / max(logins, 1)
            idle = wrk(f"{base}/", [], conns=1)
            bg = subprocess.Popen(["wrk", "-t1", "-c8", f"-d{DURATION + 2}s", "--latency", f"{base}/login"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1)
            loaded = wrk(f"{base}/", [], conns=1)
            out = bg.communicate()[0]
            # The same with the load generators (login wrk, AS double) at nice +10, so what is
            # left is the sidecar's own doing: its proxy loop vs its AS client and signers.
            renice(AS_DOUBLE.pid, 10)
            bg = subprocess.Popen(["nice", "-n", "10", "wrk", "-t1", "-c8", f"-d{DURATION + 2}s", f"{base}/login"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1)
            fair = wrk(f"{base}/", [], conns=1)
            bg.communicate()
            renice(AS_DOUBLE.pid, 0)
            p.send_signal(signal.SIGKILL)
            p.wait()
            rows[name].append({"logins": alone["rps"], "cpu": alone["cpu_us_per_req"], "errors": alone["errors"],
                               "proxy_cpu": proxy_us,
                               "idle_p50": idle["p50_ms"], "idle_p99": idle["p99_ms"],
                               "loaded_p50": loaded["p50_ms"], "loaded_p99": loaded["p99_ms"],
                               "fair_p50": fair["p50_ms"], "fair_p99": fair["p99_ms"],
                               "logins_loaded": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))})
    return {"sig_us": sig_us, "cores": cores, "capacity": capacity, "rows": rows}


def signing_report(r):
    lines = [
        "## PS256 logins on every core, and the proxy next to them",
        "",
        f"One RSA-2048 signature here (`openssl speed rsa2048`): {r['sig_us']:.0f} us; {r['cores']} cores can sign "
        f"{r['capacity']:.0f} PS256 logins/s (two signatures each). Sidecar `--threads 1`, wrk `/login` at 8 connections; "
        f"the AS double and wrk run on the same cores. Pass-through latency at 1 connection, alone and while "
        f"8 connections run logins, once with everything at nice 0 and once with the load generators (the login wrk and "
        f"the AS double) at nice +10, so that only the sidecar's own threads compete with its proxy loop; "
        f"{ROUNDS} interleaved round(s) of {DURATION} s, medians.",
        "",
        "| build | PS256 logins/s (c8) | vs cores / (2 x signature) | sidecar CPU us/login | of it on the proxy's event loop | pass-through p50 / p99 ms alone | next to the logins | p99 ratio | logins/s meanwhile | next to the logins, load generators at nice +10 | p99 ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in r["rows"].items():
        med = lambda k: statistics.median(x[k] for x in rows)
        lines.append(
            f"| {name} | {med('logins'):.0f} | {med('logins') / r['capacity']:.2f} | {med('cpu'):.0f} | {med('proxy_cpu'):.0f} | "
            f"{med('idle_p50'):.3f} / {med('idle_p99'):.3f} | {med('loaded_p50'):.3f} / {med('loaded_p99'):.3f} | "
            f"{med('loaded_p99') / med('idle_p99'):.2f} | {med('logins_loaded'):.0f} | "
            f"{med('fair_p50'):.3f} / {med('fair_p99'):.3f} | {med('fair_p99') / med('idle_p99'):.2f} |")
    return lines


POOL_SIZES = (0, 4)
assertion_pool_rows = {}


def labelled_metric(port, name, **labels):
    """One labelled series from /metrics (labels in any order), or 0 when absent."""
    r = admin_get(port, "/metrics", timeout=2)
    if not r:
        return None
    for line in r[1].splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assertion_pool_section(sidecar, origin_port, as_port, curl_cert):
    """Logins with the client-assertion pool off (0) and on (4), per algorithm: one sidecar
    per (alg, size), all started first, then interleaved rounds of wrk -c8 and -c1 on /login,
    next to the app's own redirect at c1. The AS double refuses a replayed or stale jti."""
    algs = (("PS256", "sign-ps256.pem"), ("ES256", "sign-es256.pem"), ("EdDSA", "sign-eddsa.pem"))
    cars = {}
    for alg, key in algs:
        for size in POOL_SIZES:
            p, port = sidecar(alg, key, tag=f"-pool{size}", client=f"  assertion_pool: {size}")
            wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=8, duration=1)  # warm-up
            cars[(alg, size)] = (p, port)
    rows = assertion_pool_rows
    direct = []
    stats = lambda: json.loads(sh("curl", "-s", *curl_cert, f"https://127.0.0.1:{as_port}/stats"))
    for rnd in range(ROUNDS):
        order = list(cars) if rnd % 2 == 0 else list(reversed(cars))
        direct.append(wrk(f"http://127.0.0.1:{origin_port}/login", [], conns=1))
        for k in order:
            p, port = cars[k]
            before = stats()
            c8 = wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=8)
            c1 = wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=1)
            after = stats()
            rows.setdefault(k, []).append({
                "rps": c8["rps"], "cpu_us_per_req": c8["cpu_us_per_req"], "c8_p99_ms": c8["p99_ms"],
                "c1_rps": c1["rps"], "c1_p50_ms": c1["p50_ms"], "c1_p99_ms": c1["p99_ms"],
                "errors": c8["errors"] + c1["errors"],
                "as_rejects": after["assertion_rejects"] - before["assertion_rejects"],
                "as_checked": after["assertions_checked"] - before["assertions_checked"],
            })
    out = {"direct_c1_p99": median(direct, "p99_ms"), "direct_c1_p50": median(direct, "p50_ms"), "cars": {}}
    for k, (p, port) in cars.items():
        out["cars"][k] = {m: median(rows[k], m) for m in ("rps", "cpu_us_per_req", "c8_p99_ms", "c1_rps", "c1_p50_ms", "c1_p99_ms")}
        out["cars"][k]["errors"] = sum(r["errors"] for r in rows[k])
        out["cars"][k]["as_rejects"] = sum(r["as_rejects"] for r in rows[k])
        out["cars"][k]["as_checked"] = sum(r["as_checked"] for r in rows[k])
        out["cars"][k]["pooled"] = labelled_metric(p.admin_port, "par_sidecar_client_assertions_total", source="pooled")
        out["cars"][k]["inline"] = labelled_metric(p.admin_port, "par_sidecar_client_assertions_total", source="inline")
        out["cars"][k]["stale"] = labelled_metric(p.admin_port, "par_sidecar_assertion_pool_discarded_total", reason="stale")
        ro = [labelled_metric(p.admin_port, f"par_sidecar_signing_duration_seconds_{x}", purpose="request_object") for x in ("sum", "count")]
        out["cars"][k]["sign_us"] = ro[0] / ro[1] * 1e6 if ro[0] and ro[1] else None
        p.send_signal(signal.SIGKILL)
        p.wait()
    return out


def assertion_pool_report(r):
    lines = [
        "### Client-assertion pool: logins with `client.assertion_pool` 0 (off) vs 4",
        "",
        f"`--threads 1`, private_key_jwt + JAR, `GET /login` -> PAR over mTLS to the AS double (which refuses a replayed, "
        f"stale or wrongly addressed assertion). One sidecar per row, all started first (1 s warm-up at c8), then "
        f"{ROUNDS} interleaved round(s) of wrk -c8 {DURATION} s and wrk -c1 {DURATION} s on each; medians. "
        f"App redirect alone at c1: p50 {r['direct_c1_p50']:.3f} ms, p99 {r['direct_c1_p99']:.3f} ms (p99 added = login p99 - this).",
        "",
        "| alg | pool | c1 p50 ms | c1 p99 ms | c1 p99 added ms | c1 logins/s | c8 logins/s | c8 p99 ms | CPU us/login (c8) | request object signing us (mean) | pooled / inline assertions | stale discarded | AS rejects | non-3xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (alg, size), a in r["cars"].items():
        lines.append(f"| {alg} | {size} | {a['c1_p50_ms']:.3f} | {a['c1_p99_ms']:.3f} | {a['c1_p99_ms'] - r['direct_c1_p99']:.3f} | "
                     f"{a['c1_rps']:.0f} | {a['rps']:.0f} | {a['c8_p99_ms']:.3f} | {a['cpu_us_per_req']:.0f} | {metric_or_dash(a['sign_us'])} | "
                     f"{metric_or_dash(a['pooled'])} / {metric_or_dash(a['inline'])} | {metric_or_dash(a['stale'])} | {a['as_rejects']} | {a['errors']} |")
    return lines


def main():
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is required (apt-get install nginx)")
    if not shutil.which("wrk"):
        subprocess.run(["bash", "-c", "apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk"], check=True)
    print(f"cores: {os.cpu_count()}  duration: {DURATION}s x {ROUNDS} rounds  connections: {CONNS}")
    if not BIN_GIVEN:
        sh("cargo", "build", "--release", "--locked", "--quiet", "--bin", "par-sidecar", cwd=ROOT)
    built = sh("cargo", "bench", "--bench", "as_double", "--no-run", "--message-format=json", cwd=ROOT)
    double_bin = [json.loads(l)["executable"] for l in built.splitlines() if '"executable":"' in l and "as_double" in l][-1]
    if RUN_BARE and not BARE_BIN_GIVEN:
        # After the AS double: its bench build has compiled the dev-dependencies an example
        # build also needs, so this links the example and little else.
        sh("cargo", "build", "--release", "--locked", "--quiet", "--example", "bare_pingora", cwd=ROOT)
    pki = sh("bash", str(ROOT / "tests/e2e/pki.sh"), str(WORK / "pki")).strip()
    (WORK / "nginx-tmp").mkdir()
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()[0]  # other work on the box shows up here

    as_port, origin_port, proxy_port = free_port(), free_port(), free_port()
    global AS_DOUBLE
    AS_DOUBLE = start("as_double", [double_bin, str(as_port), pki])
    curl_cert = ("--cacert", f"{pki}/ca.crt", "--cert", f"{pki}/transport.crt", "--key", f"{pki}/transport.key")
    wait_http(f"https://127.0.0.1:{as_port}/stats", curl_extra=curl_cert)
    issuer = f"https://127.0.0.1:{as_port}"
    authorize = (f"{issuer}/authorize?response_type=code&client_id=bench-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback"
                 "&scope=openid&state=af0ifjsldkj&nonce=n-0S6_WzA2Mj&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8&code_challenge_method=S256")

    origin_conf = WORK / "origin.conf"
    nginx_conf(origin_conf, origin_port, f"""
  server {{ listen 127.0.0.1:{origin_port} backlog=4096;
    location = /login {{ return 302 "{authorize}"; }}
    location = /elsewhere {{ return 302 "https://www.example.org/account?tab=2"; }}
    location = /as-host {{ return 302 "{issuer}/bank-1/logout?next=%2F"; }}
    location / {{ default_type text/plain; return 200 "hello from the legacy app\\n"; }} }}""")
    origin = start("origin", [nginx, "-c", str(origin_conf), "-g", "daemon off;"])
    proxy_conf = WORK / "proxy.conf"
    nginx_conf(proxy_conf, proxy_port, f"""
  upstream app {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{proxy_port} backlog=4096;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
    nginx_proxy = start("nginx-proxy", [nginx, "-c", str(proxy_conf), "-g", "daemon off;"])
    wait_http(f"http://127.0.0.1:{origin_port}/")
    wait_http(f"http://127.0.0.1:{proxy_port}/")
    nginx_workers = children(nginx_proxy.pid)

    def sidecar_cfg(alg, key, limits="", timeouts="", tag="", client=""):
        public, admin = free_port(), free_port()
        cfg = WORK / f"sidecar-{alg}{tag}.yaml"
        cfg.write_text(sidecar_yaml(public, admin, origin_port, issuer, pki, key, alg, client, limits, timeouts))
        return cfg, public, admin

    def sidecar(alg, key, limits="", timeouts="", binary=None, tag="", threads=1, client=""):
        """limits/timeouts: extra flow-map entries (", key: value"); binary: another build;
        client: extra lines of the client block."""
        cfg, public, admin = sidecar_cfg(alg, key, limits, timeouts, tag, client)
        p = start(f"sidecar-{alg}{tag}", [str(binary or BIN), "run", "--threads", str(threads), "--config", str(cfg)])
        wait_http(f"http://127.0.0.1:{admin}/readyz", ok=lambda s: s == 200)
        p.admin_port = admin
        return p, public

    def only(name, lines):
        report = "\n".join(lines) + "\n"
        print(report)
        out = ROOT / "benches/results" / (f"smoke-{name}.md" if SMOKE else f"{name}.md")
        out.write_text(f"Command: `python3 benches/load.py {' '.join(sys.argv[1:])}`. "
                       f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
                       f"Load average (1 min) at start {LOAD_AT_START:.2f}, at the end {os.getloadavg()[0]:.2f}.\n" + report)
        print(f"written to {out.relative_to(ROOT)}")

    if ONLY_SIGNING:
        builds = {"now": None}
        if BASELINE_BIN:
            builds["baseline"] = BASELINE_BIN
        builds.update(COMPARE_BINS)
        return only("signing", signing_report(signing_section(sidecar, builds)))
    if ONLY_AUTHZ:
        only("authz", assertion_pool_report(assertion_pool_section(sidecar, origin_port, as_port, curl_cert)))
        if SMOKE and any(r["errors"] or r["as_rejects"] for r in sum(assertion_pool_rows.values(), [])):
            raise SystemExit("assertion pool smoke run saw errors")
        return
    if ONLY_THREADS:
        return only("threads", threads_report(threads_section(sidecar, nginx, origin_port)))
    if ONLY_BARE:
        b = bare_section(sidecar, origin_port)
        only("bare-pingora", bare_report(b))
        if SMOKE and bare_smoke_errors(b):
            raise SystemExit(f"bare pingora smoke run saw errors: {bare_smoke_errors(b)}")
        return
    if ONLY_HEAP_PROFILE:
        return only("heap-profile", heap_profile_section(lambda: sidecar_cfg("ES256", "sign-es256.pem", tag="-heap")))
    if ONLY_FOOTPRINT:
        fp = footprint_section(sidecar)
        report = "\n".join(footprint_report(fp)) + "\n"
        print(report)
        out = ROOT / "benches/results" / ("smoke-footprint.md" if SMOKE else "footprint.md")
        out.write_text(f"Command: `python3 benches/load.py {' '.join(sys.argv[1:])}`. "
                       f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
                       f"Load average (1 min) at start {LOAD_AT_START:.2f}, at the end {os.getloadavg()[0]:.2f}.\n" + report)
        print(f"written to {out.relative_to(ROOT)}")
        return

    results = {"direct": [], "nginx": [], "sidecar": []}
    sc, sc_port = sidecar("ES256", "sign-es256.pem")
    targets = {
        "direct": (f"http://127.0.0.1:{origin_port}/", []),
        "nginx": (f"http://127.0.0.1:{proxy_port}/", nginx_workers),
        "sidecar": (f"http://127.0.0.1:{sc_port}/", [sc.pid]),
    }
    for name, (url, pids) in targets.items():  # warm-up
        wrk(url, pids, duration=1)
    for rnd in range(ROUNDS):
        order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
        for name in order:
            url, pids = targets[name]
            results[name].append(wrk(url, pids))
    rss_sidecar_idle = rss_kib([sc.pid])
    # 1,000 concurrent connections: peak RSS of each proxy.
    c1000 = {}
    for name in ("nginx", "sidecar"):
        url, pids = targets[name]
        r = wrk(url, pids, conns=1000, duration=max(DURATION // 2, 1))
        c1000[name] = {"rps": r["rps"], "hwm_kib": rss_kib(pids, "VmHWM"), "p99_ms": r["p99_ms"]}
    sc.send_signal(signal.SIGKILL)
    sc.wait()
    bare = bare_section(sidecar, origin_port)

    # The authorize path, per algorithm.
    authz = {}
    redirect_direct = [wrk(f"http://127.0.0.1:{origin_port}/login", [], conns=8) for _ in range(ROUNDS)]
    redirect_direct_c1 = [wrk(f"http://127.0.0.1:{origin_port}/login", [], conns=1) for _ in range(ROUNDS)]
    for alg, key in (("PS256", "sign-ps256.pem"), ("ES256", "sign-es256.pem"), ("EdDSA", "sign-eddsa.pem")):
        p, port = sidecar(alg, key)
        wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=8, duration=1)  # warm-up: pool filled
        before = json.loads(sh("curl", "-s", *curl_cert, f"https://127.0.0.1:{as_port}/stats"))
        rows = [wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=8) for _ in range(ROUNDS)]
        single = [wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=1) for _ in range(ROUNDS)]
        after = json.loads(sh("curl", "-s", *curl_cert, f"https://127.0.0.1:{as_port}/stats"))
        pars = after["pars"] - before["pars"]
        authz[alg] = {
            "rps": median(rows, "rps"), "p50_ms": median(rows, "p50_ms"), "p99_ms": median(rows, "p99_ms"),
            "cpu_us_per_req": median(rows, "cpu_us_per_req"), "errors": sum(r["errors"] for r in rows),
            "handshakes_per_par": (after["handshakes"] - before["handshakes"]) / max(pars, 1),
            "pars": pars, "as_service_us": after["par_service_us_mean"],
            "c1_p50_ms": median(single, "p50_ms"), "c1_p99_ms": median(single, "p99_ms"),
        }
        p.send_signal(signal.SIGKILL)
        p.wait()

    signing = signing_section(sidecar, {"now": None})
    multi = multi_as_section(origin_port, issuer, pki)
    fp = footprint_section(sidecar)

    # Report.
    med = {k: {m: median(v, m) for m in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")} for k, v in results.items()}
    errs = {k: sum(r["errors"] for r in v) for k, v in results.items()}
    lines = [
        "# par-sidecar benchmark results",
        "",
        f"Machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}. "
        f"{'SMOKE RUN (numbers meaningless). ' if SMOKE else ''}"
        f"wrk -t1 -c{CONNS}, {DURATION} s per run, {ROUNDS} interleaved rounds, medians. One worker per proxy. "
        f"Load average (1 min) when the runs started: {LOAD_AT_START:.2f}, at the end: {os.getloadavg()[0]:.2f}.",
        f"Command: `python3 benches/load.py`. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "Comparisons against other builds, the heap profile and worker counts are separate runs: "
        "[separate-runs.md](separate-runs.md).",
        "",
        "## Pass-through of a small response",
        "",
        "| path | req/s | p50 ms | p99 ms | proxy CPU us/req | req/s vs nginx | CPU vs nginx | non-2xx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in ("direct", "nginx", "sidecar"):
        m = med[k]
        cpu = f"{m['cpu_us_per_req']:.1f}" if m["cpu_us_per_req"] is not None else "-"
        cpu_ratio = f"{m['cpu_us_per_req'] / med['nginx']['cpu_us_per_req']:.2f}" if m["cpu_us_per_req"] is not None else "-"
        lines.append(f"| {k} | {m['rps']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {cpu} | {m['rps'] / med['nginx']['rps']:.2f} | {cpu_ratio} | {errs[k]} |")
    lines += [
        "",
        f"Sidecar RSS after the pass-through runs: {rss_sidecar_idle / 1024:.1f} MiB.",
        "",
        "## 1,000 concurrent connections (pass-through)",
        "",
        "| proxy | req/s | p99 ms | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for k, v in c1000.items():
        lines.append(f"| {k} | {v['rps']:.0f} | {v['p99_ms']:.2f} | {v['hwm_kib'] / 1024:.1f} |")
    lines += bare_report(bare)
    d50 = median(redirect_direct, "p50_ms")
    d99 = median(redirect_direct, "p99_ms")
    c1_99 = median(redirect_direct_c1, "p99_ms")
    lines += [
        "",
        "## Authorize path: app 302 -> PAR over mTLS -> rewritten 302",
        "",
        f"Direct app redirect (no PAR): p50 {d50:.3f} ms, p99 {d99:.3f} ms at 8 connections; p99 {c1_99:.3f} ms at 1.",
        "Throughput and CPU at 8 concurrent logins (one worker; login-start rate limit off, `limits.login_starts_per_second: 0`); "
        "added latency also unloaded (1 connection).",
        "",
        "| alg | logins/s (c8) | p50 ms (c8) | p99 ms (c8) | p99 added (c8) ms | p50 / p99 (c1) ms | p99 added (c1) ms | sidecar CPU us/login | AS double service us | new TLS handshakes per PAR | non-3xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for alg, a in authz.items():
        lines.append(f"| {alg} | {a['rps']:.0f} | {a['p50_ms']:.3f} | {a['p99_ms']:.3f} | {a['p99_ms'] - d99:.3f} | {a['c1_p50_ms']:.3f} / {a['c1_p99_ms']:.3f} | {a['c1_p99_ms'] - c1_99:.3f} | {a['cpu_us_per_req']:.0f} | {a['as_service_us']:.0f} | {a['handshakes_per_par']:.4f} | {a['errors']} |")
    lines += [""] + signing_report(signing)
    lines += multi_as_report(multi)
    lines += footprint_report(fp)
    report = "\n".join(lines) + "\n"
    print(report)
    out = ROOT / "benches/results" / ("smoke.md" if SMOKE else "latest.md")
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(f"written to {out.relative_to(ROOT)}")
    if SMOKE:
        bad = [k for k, v in errs.items() if v] + [a for a, v in authz.items() if v["errors"] or v["pars"] == 0]
        bad += [f"multi-AS {k}" for k, rows in multi["runs"].items() for r in rows if r["errors"]]
        bad += bare_smoke_errors(bare)
        if not all(r["logins"] > 0 and not r["errors"] for r in signing["rows"]["now"]):
            bad.append(f"signing: {signing['rows']}")
        fl = fp["flood"]["new"]
        if fl["login_errors"] or not (fl["refused"] or fl.get("evicted")) or fl["served_again_s"] is None:
            bad.append(f"flood: {fl}")
        if bad:
            raise SystemExit(f"benchmark smoke run saw errors: {bad}")


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    shutil.rmtree(WORK, ignore_errors=True)
