"""The ``preimage`` command."""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["main"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (write e.g. 1,28,28)") from None


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, n_test=args.n_test, seed=args.seed)
    return 0


def _info(args) -> int:
    from .network.load import load

    network = load(args.model, input_shape=args.input_shape)
    print(network.summary())
    return 0


def _numbers(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r} (write e.g. -1,1,-1,1)") from None


def _compute(args) -> int:
    import time

    import numpy as np

    from . import preimages
    from .errors import ShapeError
    from .geometry import Box
    from .network.load import load

    net = load(args.model, input_shape=args.input_shape)
    domain = None
    if args.vnnlib is not None:
        domain, target = preimages.read_vnnlib(args.vnnlib)
    elif args.argmax is not None:
        target = preimages.ArgMax(args.argmax)
    elif args.activity_of is not None:
        x = np.load(args.activity_of, allow_pickle=False).reshape(-1)
        if args.layer is None:
            raise ShapeError("--activity-of needs --layer L (the layer whose activity is the target)")
        target = preimages.Activity(args.layer, net.activations(x[None])[args.layer][0])
    else:
        raise ShapeError("give a target: --vnnlib PROP, --argmax C or --activity-of X.npy --layer L")
    if args.box is not None:
        bounds = np.array(args.box)
        if bounds.size != 2 * net.input_dim:
            raise ShapeError(f"--box needs {2 * net.input_dim} numbers (lo,hi per input), got {bounds.size}")
        domain = Box(bounds[0::2], bounds[1::2])
    elif domain is None and net.input_box is not None:
        domain = Box(*net.input_box)
    budget = preimages.Budget(seconds=args.seconds) if args.seconds is not None else None
    start = time.perf_counter()
    result = preimages.preimage(net, target, domain, budget=budget, checkpoint=args.checkpoint,
                                resume=args.resume, progress=not args.quiet)
    seconds = time.perf_counter() - start
    print(result.summary())
    if domain is not None:
        inner = result.inner.fraction()
        line = f"volume fraction: {inner.value:.6g}"
        if not result.complete:
            line = f"volume fraction: inner {inner.value:.6g}, outer {result.outer.fraction().value:.6g}"
        print(line + ("" if inner.exact else f" (estimate, stderr {inner.stderr:.2g})"))
    print(f"time: {seconds:.3f} s")
    if args.out is not None:
        print(f"written: {result.save(args.out)}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
        result.plot(ax)
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"plot: {args.plot}")
    return 0


def _regions(args) -> int:
    import time

    import numpy as np

    from .errors import ShapeError
    from .geometry import Box
    from .network.load import load
    from .regions.counting import count_regions
    from .regions.partition import line, plane_through

    net = load(args.model, input_shape=args.input_shape)
    if sum(x is not None for x in (args.plane, args.line, args.count)) != 1:
        raise ShapeError("give one of --plane X1.npy X2.npy X3.npy, --line X0.npy X1.npy or --count lo,hi,...")
    start = time.perf_counter()
    if args.plane is not None:
        x1, x2, x3 = (np.load(path, allow_pickle=False) for path in args.plane)
        partition = plane_through(net, x1, x2, x3, margin=args.margin)
        print(f"plane through {', '.join(args.plane)}: {len(partition)} linear regions, "
              f"{len(partition.decision_boundary())} decision-boundary segments")
        print(f"time: {time.perf_counter() - start:.3f} s")
        if args.plot is not None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 6))
            partition.plot(ax=ax, color=args.color)
            fig.savefig(args.plot, dpi=150)
            plt.close(fig)
            print(f"plot: {args.plot}")
    elif args.line is not None:
        x0, x1 = (np.load(path, allow_pickle=False) for path in args.line)
        pieces = line(net, x0, x1)
        print(f"segment {args.line[0]} -> {args.line[1]}: {len(pieces)} linear pieces")
        print(f"time: {time.perf_counter() - start:.3f} s")
    else:
        bounds = np.array(args.count)
        if bounds.size != 2 * net.input_dim:
            raise ShapeError(f"--count needs {2 * net.input_dim} numbers (lo,hi per input), got {bounds.size}")
        box = Box(bounds[0::2], bounds[1::2])
        count = count_regions(net, box, samples=args.samples, lines=args.lines, exact=args.exact, rng=0)
        if count.exact is not None:
            print(f"regions (exact): {count.exact}")
        print(f"estimate: {count.estimate:.6g} +- {count.stderr:.2g} (volume-weighted, {count.samples} samples)")
        print(f"lower bound (distinct sampled patterns): {count.lower_bound}")
        if count.lines is not None:
            print(f"pieces on a random line: {count.lines[0]:.4g} +- {count.lines[1]:.2g}")
        print(f"upper bound (Serra et al.): {count.upper_bound}")
        print(f"time: {time.perf_counter() - start:.3f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preimage",
        description="Exact preimages of ReLU networks: which inputs produce a given activity.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a small MLP on scikit-learn's digits and study its preimages")
    demo.add_argument("--out", default="preimage-demo", help="folder for figures and tables (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=300, help="training epochs (default: %(default)s)")
    demo.add_argument("--n-test", type=int, default=None, help="use only the first N test images")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    info = commands.add_parser("info", help="print the imported network: layers, shapes, parameters")
    info.add_argument("model", help="a .onnx, .nnet file")
    info.add_argument("--input-shape", type=_shape, default=None, help="input shape without batch, e.g. 1,28,28")
    info.set_defaults(run=_info)

    compute = commands.add_parser("compute", help="the exact preimage of a target: pieces, volume, completeness")
    compute.add_argument("model", help="a .onnx, .nnet file")
    compute.add_argument("--input-shape", type=_shape, default=None)
    compute.add_argument("--vnnlib", default=None, help="a VNN-LIB property: its input box and its (unsafe) set")
    compute.add_argument("--argmax", type=int, default=None, help="the inputs where output C is the largest")
    compute.add_argument("--activity-of", default=None, help="a .npy input: the preimage of its activity ...")
    compute.add_argument("--layer", type=int, default=None, help="... at this layer")
    compute.add_argument("--box", type=_numbers, default=None, help="the domain as lo,hi per input: --box=-1,1,-1,1")
    compute.add_argument("--seconds", type=float, default=None, help="time budget; past it the result is bounded")
    compute.add_argument("--checkpoint", default=None, help="write the search state to this file as it runs")
    compute.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    compute.add_argument("--out", default=None, help="write the pieces to this .npz")
    compute.add_argument("--plot", default=None, help="draw the set (2-D inputs) to this PNG")
    compute.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    compute.set_defaults(run=_compute)

    regions_cmd = commands.add_parser("regions", help="linear regions: a 2-D slice, a segment, or a count in a box")
    regions_cmd.add_argument("model", help="a .onnx, .nnet file")
    regions_cmd.add_argument("--input-shape", type=_shape, default=None)
    regions_cmd.add_argument("--plane", nargs=3, metavar="X.npy", default=None, help="the plane through three inputs")
    regions_cmd.add_argument("--margin", type=float, default=0.0, help="extend the plane's square by this much")
    regions_cmd.add_argument("--line", nargs=2, metavar="X.npy", default=None, help="the segment between two inputs")
    regions_cmd.add_argument("--count", type=_numbers, default=None, help="count in the box lo,hi per input")
    regions_cmd.add_argument("--samples", type=int, default=256, help="samples of the count estimate")
    regions_cmd.add_argument("--lines", type=int, default=8, help="random lines counted exactly")
    regions_cmd.add_argument("--exact", action="store_true", help="also enumerate every region (small inputs)")
    regions_cmd.add_argument("--plot", default=None, help="draw the plane's regions to this PNG")
    regions_cmd.add_argument("--color", choices=("pattern", "class", "lipschitz"), default="pattern")
    regions_cmd.set_defaults(run=_regions)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from .errors import PreimageError

    try:
        return args.run(args)
    except (PreimageError, FileNotFoundError) as error:
        print(f"preimage: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("preimage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
