"""Times flash-linear-attention's chunkwise KDA (chunk_kda), general DPLR (chunk_dplr_delta_rule)
and Gated DeltaNet (chunk_gated_delta_rule) at the shapes of `attnlab bench kernels`, bf16, so the
kda, dplr and gdn rows can be compared on the same GPU, and the Kimi Linear report's claim (the
tied DPLR form, KDA, about 2x the general one) measured in fla's own kernels. GDN's backward is
refused on Hopper with Triton 3.6: its fwd+bwd is then written as nan, with the reason printed.

    PYTHONPATH=path/to/fla python3 tests/reference/bench_fla.py [--csv FILE] [--shapes 0,1] [--kernels kda,dplr]

Prints forward and forward+backward medians in milliseconds (20 runs after 3 warm-ups). The first
call of each kernel and shape compiles and autotunes fla's Triton kernels: minutes each on an H200
(the four measurements need more than 10 minutes), hence --shapes (indices into SHAPES) and
--kernels to measure them in pieces. The inputs
are the tied case (a = -beta k, b = k, as attnlab's kda-as-dplr test): both kernels see the same
numbers; decays log-sigmoid of N(0, 1), about -0.8 per step."""
import argparse

import torch
import torch.nn.functional as F

from bench_sdpa import SHAPES, median_ms, write_csv


def inputs(B, T, H, D):
    def leaf(x):
        return x.to(torch.bfloat16).requires_grad_(True)
    k = F.normalize(torch.randn(B, T, H, D, device="cuda"), dim=-1)
    beta = torch.sigmoid(torch.randn(B, T, H, device="cuda"))
    g = F.logsigmoid(torch.randn(B, T, H, D, device="cuda"))
    q = F.normalize(torch.randn(B, T, H, D, device="cuda"), dim=-1)
    v = torch.randn(B, T, H, D, device="cuda")
    g_head = F.logsigmoid(torch.randn(B, T, H, device="cuda"))  # GDN's one decay per head
    return dict(q=leaf(q), k=leaf(k), v=leaf(v), g=leaf(g), beta=leaf(beta), a=leaf(-beta[..., None] * k), b=leaf(k),
                g_head=leaf(g_head))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv")
    parser.add_argument("--shapes", default="0,1", help="indices into SHAPES, e.g. 0")
    parser.add_argument("--kernels", default="kda,dplr", help="kda, dplr, gdn (GDN: forward; its backward may be refused)")
    args = parser.parse_args()
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    wanted = args.kernels.split(",")
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    from fla.ops.generalized_delta_rule import chunk_dplr_delta_rule
    from fla.ops.kda import chunk_kda

    kernels = {
        "kda": lambda x: chunk_kda(x["q"], x["k"], x["v"], x["g"], x["beta"])[0],
        "dplr": lambda x: chunk_dplr_delta_rule(x["q"], x["k"], x["v"], x["a"], x["b"], x["g"])[0],
        "gdn": lambda x: chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g_head"], x["beta"])[0],
    }
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print(f"{'kernel':<6} {'B,T,H,D':<16} {'fwd ms':>8} {'fwd+bwd ms':>11}")
    rows = []
    for B, T, H, D in shapes:
        torch.manual_seed(0)
        x = inputs(B, T, H, D)
        do = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
        for name, kernel in ((n, kernels[n]) for n in wanted):
            def fwd():
                with torch.no_grad():
                    kernel(x)

            def fwd_bwd():
                kernel(x).backward(do)

            f = median_ms(fwd)
            try:
                fb = median_ms(fwd_bwd)
            except Exception as e:  # fla refuses GDN's backward on Hopper with Triton 3.6
                print(f"{name} {B},{T},{H},{D}: backward refused ({type(e).__name__}: {str(e)[:120]})", flush=True)
                fb = float("nan")
            print(f"{name:<6} {f'{B},{T},{H},{D}':<16} {f:8.3f} {fb:11.3f}", flush=True)
            rows.append((name, B, T, H, D, f, fb))
    if args.csv:
        write_csv(args.csv, "kernel,B,T,H,D", rows)


if __name__ == "__main__":
    main()
