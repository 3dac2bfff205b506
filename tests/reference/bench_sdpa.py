"""Times PyTorch's causal scaled_dot_product_attention (bf16) at the shapes of `attnlab bench
kernels`, so the softmax row can be compared on the same GPU.

    python3 tests/reference/bench_sdpa.py [--backend flash|cudnn|efficient|any] [--csv FILE]

Prints forward and forward+backward medians in milliseconds (20 runs after 3 warm-ups). The
backend is pinned (default flash, the kernel issue 13's target names): left to choose, SDPA may
take another one from call to call. The gradients are written, not added to the last run's (as
attnlab's backward writes dq, dk and dv), so fwd+bwd holds no accumulation pass."""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"flash": [SDPBackend.FLASH_ATTENTION], "cudnn": [SDPBackend.CUDNN_ATTENTION],
            "efficient": [SDPBackend.EFFICIENT_ATTENTION],
            "any": [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH]}

SHAPES = [(8, 2048, 8, 64), (4, 4096, 16, 128)]


def median_ms(fn, reps=20):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def write_csv(path, header, rows):
    """Rows of labels followed by two times in ms (forward, forward+backward)."""
    with open(path, "w") as out:
        out.write(header + ",fwd_ms,fwd_bwd_ms\n")
        for r in rows:
            out.write(",".join(str(x) for x in r[:-2]) + f",{r[-2]:.4f},{r[-1]:.4f}\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="flash")
    args = parser.parse_args()
    rows = []
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}, SDPA backend {args.backend}")
    print(f"{'B,T,H,D':<20} {'fwd ms':>8} {'fwd+bwd ms':>11}")
    for B, T, H, D in SHAPES:
        q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        do = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)

        def fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def fwd_bwd():
            q.grad = k.grad = v.grad = None  # written afresh, not accumulated
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            o.backward(do)

        with sdpa_kernel(BACKENDS[args.backend]):
            f, fb = median_ms(fwd), median_ms(fwd_bwd)
        print(f"{f'{B},{T},{H},{D}':<20} {f:8.3f} {fb:11.3f}")
        rows.append((B, T, H, D, f, fb))
    if args.csv:
        write_csv(args.csv, "B,T,H,D", rows)


if __name__ == "__main__":
    main()
