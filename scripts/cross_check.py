#!/usr/bin/env python3
"""Compares one scenario's run on the event world with its run on turmoil.

usage: cross_check.py EVENT_SUMMARY TURMOIL_SUMMARY

Both runs use the same seed, so they send the same requests at the same
intended times. Required:
- every check has the same verdict on both networks;
- the same number of requests, and success counts within 5 % of the total.
  Two things move successes between the networks: partitions (turmoil
  drops in-flight segments, the event world stalls and delivers them later,
  as TCP retransmission does), and, inside a failure window, which replica
  a latency-aware balancer picks at each instant, which follows the latency
  of every hop (retry-storm: 7129 vs 6913 of 10524 at seed 1, 2.1 %);
- p50 and p99 agree within the quantization turmoil adds. turmoil moves
  every segment on its 1 ms tick, and a segment on one host (sidecar to
  app) waits a whole tick each way, so turmoil reads higher by up to about
  a tick per segment: a REC request crosses 10 to 14 segments. The event
  world delivers at the drawn instant, so it must never read meaningfully
  slower (10 %), and turmoil may read higher by at most 14 ms (p50) and
  20 ms (p99, where a retry or a second queueing wait doubles the
  segments).
Exit status 1 names every difference.
"""
import json
import sys

P50_TICK_BUDGET_MS = 14.0
P99_TICK_BUDGET_MS = 20.0
EVENT_SLOWER_MAX = 1.10
OK_SHARE_TOLERANCE = 0.05


def main(event_path, turmoil_path):
    event = json.load(open(event_path))
    turmoil = json.load(open(turmoil_path))
    problems = []
    verdicts_e = {c["name"]: c["passed"] for c in event["checks"]}
    verdicts_t = {c["name"]: c["passed"] for c in turmoil["checks"]}
    if verdicts_e != verdicts_t:
        differ = sorted(n for n in verdicts_e.keys() | verdicts_t.keys()
                        if verdicts_e.get(n) != verdicts_t.get(n))
        problems.append(f"verdicts differ: {differ}")
    req_e, req_t = event["requests"], turmoil["requests"]
    if req_e["total"] != req_t["total"]:
        problems.append(f"request totals differ: {req_e['total']} vs {req_t['total']}")
    elif abs(req_e["ok"] - req_t["ok"]) > OK_SHARE_TOLERANCE * max(req_t["total"], 1):
        problems.append(f"successes differ by more than 5 %: {req_e['ok']} vs {req_t['ok']}")
    for quantile, budget in (("p50", P50_TICK_BUDGET_MS), ("p99", P99_TICK_BUDGET_MS)):
        e, t = event["latency_ms"][quantile], turmoil["latency_ms"][quantile]
        if e > t * EVENT_SLOWER_MAX:
            problems.append(f"{quantile}: event {e:.2f} ms is slower than turmoil {t:.2f} ms")
        if t - e > budget:
            problems.append(f"{quantile}: turmoil {t:.2f} ms exceeds event {e:.2f} ms by more than {budget} ms")
    name = event["scenario"]
    line = (f"{name}: event p50 {event['latency_ms']['p50']:.2f} p99 {event['latency_ms']['p99']:.2f} ms,"
            f" turmoil p50 {turmoil['latency_ms']['p50']:.2f} p99 {turmoil['latency_ms']['p99']:.2f} ms,"
            f" requests {req_e['ok']}/{req_e['total']} vs {req_t['ok']}/{req_t['total']}")
    if problems:
        print(f"CROSS-CHECK FAILED {line}")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"cross-check ok  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
