"""CPU time of the exact minibatch OT that TorchCFM's OTPlanSampler runs
(POT's ot.dist + ot.emd, network simplex in C++) on 8gaussians batches, for
docs/performance.md's comparison with package coupling's Assigner.
Needs Debian's python3-pot:  OMP_NUM_THREADS=1 /usr/bin/python3 scripts/pot-emd-time.py
"""
import time, numpy as np, ot, resource
rng = np.random.default_rng(0)
def eight_gaussians(n):
    c = np.array([(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 4]) * 2 ** 0.5 * 2
    return c[rng.integers(0, 8, n)] + 0.1 * rng.standard_normal((n, 2)) * 2 ** 0.5
def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
for name, f in [("8gaussians", eight_gaussians)]:
    for n in (64, 256):
        best = 1e9
        for rep in range(5):
            t0 = cpu()
            for _ in range(8):
                x0 = rng.standard_normal((n, 2)); x1 = f(n)
                M = ot.dist(x0, x1)  # squared Euclidean, as TorchCFM
                a = ot.unif(n); b = ot.unif(n)
                p = ot.emd(a, b, M)
            best = min(best, (cpu() - t0) / 8)
        print(f"POT {ot.__version__} emd {name} n={n}: {best*1e3:.2f} ms CPU per batch (dist + emd, best of 5 x 8)")
