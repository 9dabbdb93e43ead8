#!/usr/bin/env python3
"""Reads what `voltage-loadgen --timeline W --check-database` printed and prints the
figures the system test judges, as `key=value` lines for the shell:

  requests, rps, p50_ms, p99_ms, non2xx (count), codes ("503=12 error=1" or "none"),
  missing (acknowledged but not stored), extra (stored, never acknowledged: a lost answer),
  failing (from the first to the end of the last window with an answer other than 2xx),
  and for each --fault-end END[:UNTIL] (seconds from the load's start): recoveryN_s, the time from
  END until the load is back to whole windows (up to UNTIL) of only 2xx answers at no less than 90%
  of --rate ("never" if it is not).

usage: report.py LOADGEN_OUTPUT [--rate R] [--window S] [--fault-end END[:UNTIL]]...
"""
import argparse
import re
import sys

SUMMARY = re.compile(
    r"requests (\d+) in ([\d.]+) s = (\d+) req/s; latency p50 ([\d.]+) ms, p90 [\d.]+ ms, "
    r"p99 ([\d.]+) ms, max ([\d.]+) ms; statuses ?(.*)"
)
WINDOW = re.compile(r"t=\s*([\d.]+) ms\s+requests\s+(\d+).*?(?:non-2xx (.*))?$")
CHECK_OK = re.compile(r"exactly the (\d+) distinct acknowledged events are stored")
CHECK_BAD = re.compile(r"(\d+) acknowledged events missing, (\d+) stored but never acknowledged")


def parse(text):
    figures, windows = {}, []
    for line in text.splitlines():
        if m := SUMMARY.search(line):
            requests, _, rps, p50, p99, pmax, statuses = m.groups()
            codes = dict(s.split("=") for s in statuses.split())
            bad = {c: int(n) for c, n in codes.items() if not c.startswith("2")}
            figures.update(requests=int(requests), rps=int(rps), p50_ms=p50, p99_ms=p99, max_ms=pmax)
            figures["non2xx"] = sum(bad.values())
            figures["codes"] = " ".join(f"{c}={n}" for c, n in bad.items()) or "none"
        elif m := WINDOW.match(line.strip()):
            start, requests, bad = m.groups()
            windows.append((float(start) / 1000, int(requests), bad is not None))
        elif m := CHECK_OK.search(line):
            figures.update(missing=0, extra=0)
        elif m := CHECK_BAD.search(line):
            figures.update(missing=int(m.group(1)), extra=int(m.group(2)))
    return figures, windows


def recovery(windows, fault_end, until, rate, width):
    """Seconds from fault_end to the first window after which every whole window up to `until` is
    healthy (2xx only, at least 90% of the rate)."""
    whole = windows[:-1]  # the last window is cut short by the end of the run
    healthy_from = None
    for start, requests, bad in whole:
        if start + width <= fault_end or start + width > until:
            continue
        healthy = not bad and requests >= 0.9 * rate * width
        if healthy and healthy_from is None:
            healthy_from = start
        elif not healthy:
            healthy_from = None
    if healthy_from is None:
        return None
    return max(0.0, healthy_from - fault_end)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--fault-end", action="append", default=[], help="END[:UNTIL] in seconds")
    args = parser.parse_args()
    with open(args.output) as f:
        figures, windows = parse(f.read())
    if "requests" not in figures:
        sys.exit(f"no loadgen summary in {args.output}")
    figures.setdefault("missing", "unknown")
    figures.setdefault("extra", "unknown")
    bad = [start for start, _, failed in windows if failed]
    figures["failing"] = f"{bad[0]:.1f}-{bad[-1] + args.window:.1f} s" if bad else "none"
    for i, span in enumerate(args.fault_end, 1):
        end, _, until = span.partition(":")
        found = recovery(windows, float(end), float(until or "inf"), args.rate, args.window)
        figures[f"recovery{i}_s"] = "never" if found is None else f"{found:.1f}"
    for key, value in figures.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
