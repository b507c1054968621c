#!/usr/bin/env python3
"""bench/distributed/model.py: the step-time model of data-parallel training
(docs/distributed.md), checked against bench/distributed/run.sh's measurements
and used to predict the speedup of gpt2-small and gpt2-medium at 2-64 ranks.

    python3 bench/distributed/model.py [bench-distributed.log]

Without a log it prints the predictions only (from the compute measured in
bench/RESULTS.md).

The model, per step and rank, with S the gradient's bytes (4 per parameter):

    T_step(N) = T_compute + T_exposed(N)
    T_ring(N, s) = 2 (N - 1) / N * s / bandwidth + 2 (N - 1) * latency

The ring allreduce sends and receives 2 (N-1)/N of the buffer per rank. The
block buckets start while backward runs on the blocks below; the embedding
bucket (with a tied head, GPT-2's largest tensor) only when backward ends. So
T_exposed lies between

    no overlap:    T_ring(N, S)
    full overlap:  T_ring(N, S_emb) + max(0, T_ring(N, S_blocks) - T_backward_blocks)

with T_backward_blocks taken as 2/3 of T_compute (backward is twice forward)
times the blocks' share of the FLOPs.  Data parallelism keeps each rank's batch
(weak scaling): the speedup is N T_compute / T_step(N).
"""
import re
import statistics
import sys


def gpt_params(L, C, V, T):
    blocks = L * (12 * C * C + 13 * C)
    emb = V * C + T * C
    return blocks, emb + 2 * C  # the final LayerNorm goes with the last bucket


def flops_per_token(L, C, V, T):
    blocks, rest = gpt_params(L, C, V, T)
    return 6 * (blocks + V * C) + 12 * L * T * C, 6 * blocks + 12 * L * T * C


def ring(n, size, bw_bits, latency=20e-6):
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * size * 8 / bw_bits + 2 * (n - 1) * latency


def step(n, t_compute, s_blocks, s_emb, block_share, bw):
    no_overlap = ring(n, s_blocks + s_emb, bw)
    hidden = 2 / 3 * t_compute * block_share
    overlap = ring(n, s_emb, bw) + max(0.0, ring(n, s_blocks, bw) - hidden)
    return t_compute + no_overlap, t_compute + overlap


def check(log):
    runs, bw = {}, {}
    btl = None
    for line in open(log):
        m = re.match(r"# allreduce over (\S+)", line)
        if m:
            btl = m.group(1)
            continue
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        if "run" in kv:
            runs.setdefault(kv["run"], []).append(kv)
        elif "bus_gbit_s" in kv and btl:
            bw.setdefault(btl, {})[float(kv["bytes"])] = float(kv["bus_gbit_s"]) * 1e9
    if not runs:
        return
    L, C, V, T, B = 6, 384, 50257, 256, 8
    s_blocks, s_emb = (4 * p for p in gpt_params(L, C, V, T))
    total, block_flops = flops_per_token(L, C, V, T)
    med = lambda name, key: statistics.median(float(r[key]) for r in runs[name])
    t_half = (B // 2) * T / med("one-1thread-half", "tokens_per_s")
    print("\n6 x 384 model (%.1fM parameters, gradient %.0f MiB), batch %d x %d:"
          % ((s_blocks + s_emb) / 4e6, (s_blocks + s_emb) / 2**20, B, T))
    print("per-rank compute (1 thread, batch %d): %.2f s a step" % (B // 2, t_half))
    print("\n| run | tokens/s | step s | waiting for sums s/step (share) | bus bandwidth "
          "| predicted allreduce s (no overlap .. overlap) | predicted tokens/s from the "
          "lone rank's compute | from the group's own compute |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    one = med("one-2threads", "tokens_per_s")
    print("| 1 process x 2 threads | %.1f | %.2f | | | | | |" % (one, B * T / one))
    print("| 1 process x 1 thread, batch %d | %.1f | %.2f | | | | | |"
          % (B // 2, med("one-1thread-half", "tokens_per_s"), t_half))
    for name, transport in (("ranks2-shm", "self,vader"), ("ranks2-tcp", "self,tcp")):
        if name not in runs or transport not in bw:
            continue
        b = bw[transport][max(bw[transport])]
        share = block_flops / total
        tps = med(name, "tokens_per_s")
        t_step = B * T / tps
        wait = med(name, "comm_wait_s_per_step")
        lo, hi = step(2, t_half, s_blocks, s_emb, share, b)
        # The compute the ranks actually got, sharing the cores: the step less the wait.
        glo, ghi = step(2, t_step - wait, s_blocks, s_emb, share, b)
        print("| 2 ranks x 1 thread, %s | %.1f | %.2f | %.2f (%s%%) | %.2f Gbit/s | %.2f .. %.2f "
              "| %.1f .. %.1f | %.1f .. %.1f |"
              % (transport.split(",")[1], tps, t_step, wait, runs[name][0]["comm_wait_share"],
                 b / 1e9, lo - t_half, hi - t_half, B * T / lo, B * T / hi, B * T / glo,
                 B * T / ghi))


def predict(speed=1):
    # bench/RESULTS.md: gptd's gpt2-small step, batch 4 x 256, 2 threads, 169.8 GFLOP/s.
    gflops = 169.8e9 * speed
    where = ("this machine's 2 cores" if speed == 1
             else "a node %d times as fast as this machine" % speed)
    print("\nPredicted speedup (weak scaling: each rank keeps batch 4 x 256 on %s; "
          "no overlap / full overlap):\n" % where)
    for name, (L, C) in (("gpt2-small", (12, 768)), ("gpt2-medium", (24, 1024))):
        V, T = 50257, 1024
        s_blocks, s_emb = (4 * p for p in gpt_params(L, C, V, T))
        total, block_flops = flops_per_token(L, C, V, 256)
        t = 4 * 256 * total / gflops
        print("%s: %.0fM parameters, gradient %.0f MiB, compute %.2f s a step\n"
              % (name, (s_blocks + s_emb) / 4e6, (s_blocks + s_emb) / 2**20, t))
        ranks = (2, 4, 8, 16, 32, 64)
        print("| link | " + " | ".join("%d ranks" % n for n in ranks) + " |")
        print("|---|" + "---:|" * len(ranks))
        for gbit in (10, 25, 100):
            cells = []
            for n in ranks:
                lo, hi = step(n, t, s_blocks, s_emb, block_flops / total, gbit * 1e9)
                cells.append("%.1f / %.1f" % (n * t / lo, n * t / hi))
            print("| %d Gbit/s | %s |" % (gbit, " | ".join(cells)))
        print()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        check(sys.argv[1])
    predict(1)
    predict(16)
