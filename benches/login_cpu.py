#!/usr/bin/env python3
"""Sidecar CPU per login, build against build, and a perf profile of one build's logins.

Same setup as `load.py --only-authz` (the AS double over mTLS, nginx as the app answering
/login with the authorize 302, `--threads 1`, `login_starts_per_second: 0`), but interleaved
rounds (A B A B ..., the order reversed every other round), each with a fresh sidecar per
build and algorithm: 2 s of warm-up, then `wrk -t1 -c8` on /login. CPU per login is the
sidecar's utime+stime from /proc over the run, divided by the logins wrk counted.

  python3 benches/login_cpu.py --bin A [--bin B ...] [--alg ES256,PS256] [--rounds 7] [--duration 5]
  python3 benches/login_cpu.py --bin A --perf OUT.data [--perf-seconds 8] [--alg ES256]
      # perf record -e cpu-clock -g (dwarf unwinding) on the sidecar while wrk runs logins

Reported per build and algorithm: the median and the spread (min..max) of the rounds.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

# load.py's helpers (start, wrk, wait_http, nginx_conf, free_port, sh), without running it.
_src = (Path(__file__).resolve().parent / "load.py").read_text()
load = types.ModuleType("load")
load.__file__ = str(Path(__file__).resolve().parent / "load.py")
exec(compile(_src[: _src.rindex("\ntry:\n    main()")], load.__file__, "exec"), load.__dict__)

ROOT = load.ROOT
KEYS = {"PS256": "sign-ps256.pem", "ES256": "sign-es256.pem", "EdDSA": "sign-eddsa.pem"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", required=True)
    ap.add_argument("--alg", default="ES256")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--pool", default=None, help="client.assertion_pool (default: the sidecar's default)")
    ap.add_argument("--perf", default=None, help="perf.data path: profile the first --bin instead")
    ap.add_argument("--perf-seconds", type=int, default=8)
    ap.add_argument("--strace", default=None, help="strace -c output path: count the first --bin's syscalls per login")
    ap.add_argument("--double", default=None, help="a built as_double (else `cargo bench --no-run`)")
    ap.add_argument("--perf-args", default="--call-graph dwarf,16384 -F 2000")
    a = ap.parse_args()
    work = load.WORK
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    double_bin = a.double
    if not double_bin:
        built = load.sh("cargo", "bench", "--bench", "as_double", "--no-run", "--message-format=json", cwd=ROOT)
        double_bin = [json.loads(l)["executable"] for l in built.splitlines()
                      if '"executable":"' in l and "as_double" in l][-1]
    pki = load.sh("bash", str(ROOT / "tests/e2e/pki.sh"), str(work / "pki")).strip()
    (work / "nginx-tmp").mkdir()
    load_start = os.getloadavg()[0]
    as_port, origin_port = load.free_port(), load.free_port()
    load.start("as_double", [double_bin, str(as_port), pki])
    curl_cert = ("--cacert", f"{pki}/ca.crt", "--cert", f"{pki}/transport.crt", "--key", f"{pki}/transport.key")
    load.wait_http(f"https://127.0.0.1:{as_port}/stats", curl_extra=curl_cert)
    issuer = f"https://127.0.0.1:{as_port}"
    authorize = (f"{issuer}/authorize?response_type=code&client_id=bench-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback"
                 "&scope=openid&state=af0ifjsldkj&nonce=n-0S6_WzA2Mj&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8&code_challenge_method=S256")
    origin_conf = work / "origin.conf"
    load.nginx_conf(origin_conf, origin_port, f"""
  server {{ listen 127.0.0.1:{origin_port} backlog=4096;
    location = /login {{ return 302 "{authorize}"; }}
    location / {{ default_type text/plain; return 200 "hello\\n"; }} }}""")
    load.start("origin", [nginx, "-c", str(origin_conf), "-g", "daemon off;"])
    load.wait_http(f"http://127.0.0.1:{origin_port}/")

    def sidecar(binary, alg, tag):
        public, admin = load.free_port(), load.free_port()
        cfg = work / f"sidecar-{tag}.yaml"
        cfg.write_text(load.sidecar_yaml(public, admin, origin_port, issuer, pki, KEYS[alg], alg,
                                         f"  assertion_pool: {a.pool}" if a.pool is not None else ""))
        p = load.start(f"sidecar-{tag}", [binary, "run", "--threads", "1", "--config", str(cfg)])
        load.wait_http(f"http://127.0.0.1:{admin}/readyz", ok=lambda s: s == 200)
        return p, public

    algs = a.alg.split(",")
    try:
        if a.perf:
            p, port = sidecar(a.bin[0], algs[0], "perf")
            load.wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=a.conns, duration=2)  # warm-up
            w = subprocess.Popen(["wrk", "-t1", f"-c{a.conns}", f"-d{a.perf_seconds + 3}s", f"http://127.0.0.1:{port}/login"],
                                 stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            subprocess.run(["perf", "record", "-e", "cpu-clock", *a.perf_args.split(), "-o", a.perf,
                            "-p", str(p.pid), "--", "sleep", str(a.perf_seconds)], check=True)
            print(w.communicate()[0])
            return
        if a.strace:
            p, port = sidecar(a.bin[0], algs[0], "strace")
            load.wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=a.conns, duration=2)  # warm-up
            st = subprocess.Popen(["strace", "-c", "-f", "-o", a.strace, "-p", str(p.pid)])
            time.sleep(1)
            out = load.sh("wrk", "-t1", f"-c{a.conns}", "-d4s", f"http://127.0.0.1:{port}/login")
            time.sleep(0.5)
            st.send_signal(2)
            st.wait()
            print(out)
            return
        # A fresh sidecar per build and round: one process's own layout (e.g. which AS
        # connections its discovery runtime opened) shifts its CPU per login by a few per
        # cent for its whole life, so each round measures new processes.
        keys = [(alg, i) for alg in algs for i in range(len(a.bin))]
        rows = {k: [] for k in keys}
        for rnd in range(a.rounds):
            order = keys if rnd % 2 == 0 else list(reversed(keys))
            for k in order:
                alg, i = k
                p, port = sidecar(a.bin[i], alg, f"{alg}-{i}-{rnd}")
                load.wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=a.conns, duration=2)  # warm-up
                r = load.wrk(f"http://127.0.0.1:{port}/login", [p.pid], conns=a.conns, duration=a.duration)
                p.kill()
                p.wait()
                if r["errors"]:
                    raise SystemExit(f"{k}: {r['errors']} non-3xx responses")
                rows[k].append(r)
        print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average (1 min) at start "
              f"{load_start:.2f}, at the end {os.getloadavg()[0]:.2f}; {a.rounds} rounds x {a.duration} s, wrk -t1 -c{a.conns}")
        print("| alg | build | CPU us/login median | min..max | logins/s median | p99 ms median |")
        print("|---|---|---|---|---|---|")
        for (alg, i), rs in rows.items():
            cpu = [r["cpu_us_per_req"] for r in rs]
            print(f"| {alg} | {a.bin[i]} | {statistics.median(cpu):.1f} | {min(cpu):.1f}..{max(cpu):.1f} | "
                  f"{statistics.median(r['rps'] for r in rs):.0f} | {statistics.median(r['p99_ms'] for r in rs):.3f} |")
            print("  rounds:", " ".join(f"{c:.1f}" for c in cpu))
    finally:
        for p in load.procs:
            p.kill()
        shutil.rmtree(load.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
