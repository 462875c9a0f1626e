#!/usr/bin/env python3
"""Config at scale: Ringway with 100, 1,000 and 10,000 routes, beside nginx with as many
`location` blocks, on loopback.

For each route count it measures, over --rounds runs (median and min-max):
  check      `ringway check` / `nginx -t`, wall time
  reload     `ringway ctl reload` answered (every shard on the new epoch), at each shard
             count; nginx: from `nginx -s reload` until a new worker runs
  RSS        after start, and after every route has served one request (whole process,
             all threads; nginx: master and workers)
  p99        at a fixed open-loop rate (5,000 req/s), in interleaved rounds: steady, then
             while the config is reloaded every 0.5 s (Ringway at 1 shard, pinned to CPU 0;
             the load generator and stub on HELPER_CPUS, default 1); failed requests and
             failed reloads are counted
with --burn a third p99 phase runs a CPU burner of the reload's duty cycle (100 ms every
0.5 s at idle priority) instead of reloads, to tell the host's share of the reload phase,
and with --leak: RSS, open fds and threads over 100 reloads of a small config, 20 reloads
of 10,000 routes and 20 reloads that each rename 2,000 routes.

Usage (from the repository root, after `cargo build --release -p ringway-control -p
ringway-perf`):

    python3 perf/config_scale.py [--routes 100 1000 10000] [--shards 1 8] [--rounds 5]
                                 [--leak] [--burn] [--no-nginx] [--json out.json]

It starts everything it needs (the stub upstream, Ringway, nginx if installed) on
127.0.0.1 ports from --port-base and stops them on exit. Results go to stdout as a markdown
table (the format of perf/RESULTS.md).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("BIN", "target/release")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd):
    start = time.perf_counter()
    run(cmd)
    return time.perf_counter() - start


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def spread(values, unit="", scale=1.0, digits=0):
    values = [v * scale for v in values]
    fmt = f"{{:.{digits}f}}"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return f"{med}{unit}"
    return f"{med}{unit} ({fmt.format(min(values))}-{fmt.format(max(values))})"


class Work:
    def __init__(self, port_base):
        self.dir = tempfile.mkdtemp(prefix="ringway-config-scale.")
        self.upstream = f"127.0.0.1:{port_base}"
        self.listen = f"127.0.0.1:{port_base + 1}"
        self.nginx_listen = f"127.0.0.1:{port_base + 2}"
        self.admin = f"127.0.0.1:{port_base + 3}"
        self.socket = os.path.join(self.dir, "control.sock")
        self.procs = []

    def spawn(self, cmd, log):
        out = open(os.path.join(self.dir, log), "w")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()

    def config(self, routes, shards, name, rename=None, rename_count=None, nginx=False):
        path = os.path.join(self.dir, name)
        cmd = [
            f"{BIN}/ringway-perf", "routes", "--routes", str(routes),
            "--upstream", self.upstream, "--control", self.socket,
            "--shards", str(shards), "--admin", self.admin,
            "--listen", self.nginx_listen if nginx else self.listen,
        ]
        if rename is not None:
            cmd += ["--rename", str(rename)]
        if rename_count is not None:
            cmd += ["--rename-count", str(rename_count)]
        if nginx:
            cmd.append("--nginx")
        with open(path, "w") as f:
            subprocess.run(cmd, check=True, stdout=f)
        return path


def wait_until(check, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def ctl(work, *args):
    return run([f"{BIN}/ringway", "ctl", "--socket", work.socket, *args])


def ringway_up(work):
    try:
        ctl(work, "status")
        return True
    except subprocess.CalledProcessError:
        return False


def touch(work, routes, addr):
    run([f"{BIN}/ringway-perf", "routes", "--routes", str(routes), "--touch", addr])


# The load generator and the stub share these CPUs (`taskset -c`), so that Ringway's shard
# (pinned to CPU 0) has its core to itself; "" runs them unpinned.
HELPER_CPUS = os.environ.get("HELPER_CPUS", "1")


def pinned(cmd):
    return ["taskset", "-c", HELPER_CPUS, *cmd] if HELPER_CPUS else cmd


def load(url, rate, seconds):
    out = run(pinned([
        f"{BIN}/ringway-perf", "load", "--url", url, "--connections", "20",
        "--rate", str(rate), "--duration", f"{seconds}s", "--warmup", "1s", "--json",
    ])).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["latency_us"]["p99"], result["errors"]["total"] + result["unsent"]


# A control for the reload phase: the same duty cycle of CPU work that is not Ringway's
# (100 ms every 0.5 s, at idle priority, on any CPU), to tell what the host does to p99 when
# a core gets busy from what a reload does.
BURNER = ("while true; do chrt -i 0 timeout 0.1 sh -c 'while :; do :; done'; sleep 0.4; done")


def ringway_row(work, routes, shards, rounds, rate, seconds, burn=False):
    config = work.config(routes, shards, f"r{routes}-s{shards}.toml")
    row = {}
    if shards == 1:
        row["check_s"] = [timed([f"{BIN}/ringway", "check", "-c", config]) for _ in range(rounds)]
    proc = work.spawn([f"{BIN}/ringway", "run", "-c", config], f"ringway-{routes}-{shards}.log")
    wait_until(lambda: ringway_up(work), "ringway to start")
    if os.environ.get("CONTROL_CPUS"):
        # Experiment: every thread but the shards' on these CPUs.
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            with open(f"/proc/{proc.pid}/task/{tid}/comm") as f:
                if not f.read().startswith("ringway-shard"):
                    run(["taskset", "-p", "-c", os.environ["CONTROL_CPUS"], tid])
    time.sleep(1)
    row["rss_start_kb"] = rss_kb([proc.pid])
    touch(work, routes, work.listen)
    # Statistics are handed to the control thread at the next report (1 s).
    time.sleep(2.5)
    row["rss_touched_kb"] = rss_kb([proc.pid])
    row["reload_s"] = [timed([f"{BIN}/ringway", "ctl", "--socket", work.socket, "reload"])
                       for _ in range(rounds)]
    if shards == 1:
        # Interleaved rounds: steady, then reloading every 0.5 s, `rounds` times.
        url = f"http://{work.listen}/bench"
        for key in ("p99_steady_us", "p99_reloading_us"):
            row[key] = []
        row["failed_steady"] = row["failed_reloading"] = row["reloads_failed"] = 0
        for _ in range(rounds):
            p99, failed = load(url, rate, seconds)
            row["p99_steady_us"].append(p99)
            row["failed_steady"] += failed
            # SIGHUP from bash's builtin `kill`: the same reload as `ringway ctl reload`,
            # without starting a client process every time on the CPUs being measured.
            before = json.loads(ctl(work, "status").stdout)["reloads"]
            reloader = subprocess.Popen(
                ["bash", "-c", f"while true; do kill -HUP {proc.pid}; sleep 0.5; done"])
            try:
                p99, failed = load(url, rate, seconds)
            finally:
                reloader.terminate()
                reloader.wait()
            time.sleep(0.6)
            after = json.loads(ctl(work, "status").stdout)["reloads"]
            row["reloads_failed"] += after["failed"] - before["failed"]
            row.setdefault("reloads_ok", 0)
            row["reloads_ok"] += after["ok"] - before["ok"]
            row["p99_reloading_us"].append(p99)
            row["failed_reloading"] += failed
            if burn:
                burner = subprocess.Popen(["bash", "-c", BURNER])
                try:
                    p99, _ = load(url, rate, seconds)
                finally:
                    burner.terminate()
                    burner.wait()
                row.setdefault("p99_burner_us", []).append(p99)
    work.stop(proc)
    return row


def nginx_row(work, routes, rounds):
    config = work.config(routes, 1, f"nginx-{routes}.conf", nginx=True)
    prefix = os.path.join(work.dir, "nginx")
    os.makedirs(prefix, exist_ok=True)
    base = ["nginx", "-p", prefix, "-c", config]
    row = {"check_s": [timed(base + ["-t", "-q"]) for _ in range(rounds)]}
    proc = work.spawn(base, f"nginx-{routes}.log")

    def workers():
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        return set(int(p) for p in out.stdout.split())

    wait_until(lambda: len(workers()) >= 1, "nginx workers")
    time.sleep(1)
    row["rss_start_kb"] = rss_kb([proc.pid, *workers()])
    touch(work, routes, work.nginx_listen)
    row["rss_touched_kb"] = rss_kb([proc.pid, *workers()])
    reloads = []
    for _ in range(rounds):
        before = workers()
        start = time.perf_counter()
        run(base + ["-s", "reload"])
        wait_until(lambda: bool(workers() - before), "a new nginx worker")
        reloads.append(time.perf_counter() - start)
        wait_until(lambda: not (workers() & before), "the old nginx worker to go", 60)
    row["reload_s"] = reloads
    work.stop(proc, signal.SIGQUIT)
    return row


def settle(work):
    """Waits until every replaced epoch has been freed (at the reports after the last
    request that could use it), and one report interval more for the memory to go back."""
    wait_until(lambda: json.loads(ctl(work, "status").stdout)["retired_epochs"] == 0,
               "the replaced epochs to be freed", 30)
    time.sleep(1.5)


def leak(work, rounds_small, rounds_big):
    """RSS, fds and threads before and after runs of reloads."""
    results = []
    small = work.config(10, 1, "leak-small.toml")
    big = work.config(10_000, 1, "leak-big.toml")
    renamed = [work.config(10_000, 1, f"leak-rename-{k}.toml", rename=k, rename_count=2000)
               for k in range(2)]
    for name, first, files, count in [
        ("100 reloads, 10 routes", small, [small], rounds_small),
        ("20 reloads, 10,000 routes", big, [big], rounds_big),
        ("20 reloads renaming 2,000 of 10,000 routes", renamed[0], renamed, rounds_big),
    ]:
        proc = work.spawn([f"{BIN}/ringway", "run", "-c", first], "leak.log")
        wait_until(lambda: ringway_up(work), "ringway to start")
        routes = 10 if first == small else 10_000
        # Warm-up, not counted: three rounds of reloading each file and serving every route,
        # so that the allocator holds its working set (the first reloads grow it by a few
        # epochs' worth), then every replaced epoch freed.
        for _ in range(3):
            for f in files:
                ctl(work, "reload", f)
                touch(work, routes, work.listen)
        settle(work)
        before = (rss_kb([proc.pid]), fds(proc.pid), threads(proc.pid))
        for i in range(count):
            ctl(work, "reload", files[i % len(files)])
            touch(work, routes, work.listen)
        settle(work)
        after = (rss_kb([proc.pid]), fds(proc.pid), threads(proc.pid))
        results.append((name, before, after))
        work.stop(proc)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=int, default=5000, help="open-loop req/s for p99")
    parser.add_argument("--seconds", type=int, default=6, help="length of each p99 run")
    parser.add_argument("--port-base", type=int, default=28100)
    parser.add_argument("--leak", action="store_true")
    parser.add_argument("--leak-only", action="store_true", help="only the --leak figures")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--burn", action="store_true",
                        help="a third p99 phase: a CPU burner of the reload's duty cycle")
    parser.add_argument("--json")
    args = parser.parse_args()

    work = Work(args.port_base)
    stub = work.spawn(pinned([f"{BIN}/ringway-perf", "stub", "--listen", work.upstream,
                              "--body", "13", "--threads", "1"]), "stub.log")
    results = {"ringway": {}, "nginx": {}, "leak": []}
    try:
        time.sleep(0.5)
        for routes in [] if args.leak_only else args.routes:
            for shards in args.shards:
                row = ringway_row(work, routes, shards, args.rounds, args.rate, args.seconds,
                                  args.burn)
                results["ringway"][f"{routes}/{shards}"] = row
                print(f"ringway {routes} routes, {shards} shards: {row}", file=sys.stderr)
            if not args.no_nginx and subprocess.run(["which", "nginx"],
                                                    capture_output=True).returncode == 0:
                row = nginx_row(work, routes, args.rounds)
                results["nginx"][str(routes)] = row
                print(f"nginx {routes} locations: {row}", file=sys.stderr)
        if args.leak or args.leak_only:
            results["leak"] = leak(work, 100, 20)
    finally:
        work.stop(stub)
        work.cleanup()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    report(results, args)


def report(results, args):
    mb = 1 / 1024
    if args.leak_only:
        args.routes = []
    few, many = min(args.shards), max(args.shards)
    counts = [few] if few == many else [few, many]
    plural = lambda n: f"{n} shard" + ("" if n == 1 else "s")  # noqa: E731
    head = ["routes", "check"] + [f"reload, {plural(n)}" for n in counts]
    head += [f"RSS {plural(n)}: start / all routes served" for n in counts]
    head.append(f"p99 at {args.rate:,} req/s, {plural(1)}: steady / reloading every 0.5 s")
    if args.routes:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    for routes in args.routes:
        rows = [results["ringway"].get(f"{routes}/{n}") for n in counts]
        one = results["ringway"].get(f"{routes}/1")
        cells = [f"{routes:,}", spread(one["check_s"], " ms", 1000) if one else ""]
        for row in rows:
            cells.append(spread(row["reload_s"], " ms", 1000))
        for row in rows:
            cells.append(f"{row['rss_start_kb'] * mb:.0f} / {row['rss_touched_kb'] * mb:.0f} MB")
        if one:
            steady, reloading = one["p99_steady_us"], one["p99_reloading_us"]
            ratio = statistics.median(reloading) / statistics.median(steady)
            burner = ""
            if "p99_burner_us" in one:
                burn = one["p99_burner_us"]
                burner = (f"; burner alone: {spread(burn, ' ms', 0.001, 2)} = "
                          f"{statistics.median(burn) / statistics.median(steady):.2f}x")
            cells.append(f"{spread(steady, ' ms', 0.001, 2)} / "
                         f"{spread(reloading, ' ms', 0.001, 2)} = {ratio:.2f}x{burner} "
                         f"(failed: {one['failed_steady']} / {one['failed_reloading']}; "
                         f"reloads: {one['reloads_ok']} ok, {one['reloads_failed']} failed)")
        else:
            cells.append("")
        print("| " + " | ".join(cells) + " |")
        nginx = results["nginx"].get(str(routes))
        if nginx:
            blank = [""] * (len(counts) - 1)
            cells = [f"nginx, {routes:,} locations", spread(nginx["check_s"], " ms", 1000),
                     spread(nginx["reload_s"], " ms", 1000), *blank,
                     f"{nginx['rss_start_kb'] * mb:.0f} / {nginx['rss_touched_kb'] * mb:.0f} MB",
                     *blank, ""]
            print("| " + " | ".join(cells) + " |")
    if results["leak"]:
        print()
        print("| reloads | RSS before -> after | fds | threads |")
        print("|---|---|---|---|")
        for name, before, after in results["leak"]:
            print(f"| {name} | {before[0] * mb:.1f} -> {after[0] * mb:.1f} MB "
                  f"| {before[1]} -> {after[1]} | {before[2]} -> {after[2]} |")


if __name__ == "__main__":
    main()
