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


def _integers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r} (write e.g. 0,2)") from None


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


def _patterns(args) -> int:
    import time

    import numpy as np

    from . import patterns as pat
    from .network.load import load

    net = load(args.model, input_shape=args.input_shape)
    data = "digits" if args.data == "digits" else np.load(args.data, mmap_mode="r", allow_pickle=False)
    start = time.perf_counter()
    P = pat.dataset_patterns(net, data, layers=args.layers, out=args.out, progress=not args.quiet)
    print(f"{len(P)} inputs, layers {list(P.layers)} of {list(P.units)} units: patterns in "
          f"{time.perf_counter() - start:.3f} s" + (f", written to {args.out}" if args.out else ""))
    stats = pat.unit_statistics(P, saturation=args.saturation)
    print(pat.format_statistics(stats))
    pairs = pat.random_pair_distances(P, args.pairs, rng=args.seed)
    print("random pairs, Hamming distance / units: " + ", ".join(
        f"layer {layer} {d.mean() / u:.3f} +- {d.std() / u:.3f}" for layer, d, u in zip(P.layers, pairs, P.units)))
    if args.knn:
        start = time.perf_counter()
        _, dist = pat.hamming_knn(P, args.knn)
        print(f"{args.knn}-nearest neighbours (all layers, {P.n_units} bits): mean distance to the nearest "
              f"{dist[:, 0].mean():.3f}, to the {args.knn}th {dist[:, -1].mean():.3f}, "
              f"{np.mean(dist[:, 0] == 0):.1%} share their whole pattern ({time.perf_counter() - start:.3f} s)")
    for rates in ("observed", 0.5):
        tests = pat.bernoulli_test(P, p=rates, rng=args.seed)
        print(f"Bernoulli test, mean distance, rates {rates}: " + ", ".join(
            f"layer {t.layer} {t.observed:.2f} vs {t.null_mean:.2f} (p {t.p_value:.3g})" for t in tests))
    result = pat.constellations(P, n_subset=args.clusters, rng=args.seed)
    print(f"constellations of {len(result['subset'])} inputs: score {result['data'].score:.4f}, matched random "
          f"{result['random'].score:.4f} (ratio {result['score_ratio']:.3f})")
    if args.plot is not None:
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ._io import write_atomic
        from .viz import plot_activation_histograms

        fig, ax = plt.subplots(figsize=(6, 4))
        plot_activation_histograms(stats, ax=ax)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        print(f"plot: {write_atomic(args.plot, buffer.getvalue())}")
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


def _write_png(path, figure) -> str:
    import io

    from ._io import write_atomic

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return str(write_atomic(path, buffer.getvalue()))


def _model_nesting(args) -> list:
    """The nesting of each model file: ONNX/NNet through the imported Network, torch weights through the
    experiment's architecture named by --architecture."""
    from pathlib import Path

    from .conv import nesting_over_checkpoints, network_nesting
    from .conv.experiment import ARCHITECTURES
    from .errors import ShapeError
    from .network.load import load

    runs = []
    for path in args.models:
        if Path(path).suffix.lower() in (".pt", ".pth"):
            if args.architecture is None or args.input_shape is None or len(args.input_shape) != 3:
                raise ShapeError(f"{path} holds weights only: give --architecture ({', '.join(ARCHITECTURES)}) "
                                 "and --input-shape C,H,W")
            channels, height, width = args.input_shape
            if height != width:
                raise ShapeError(f"the experiment's models take square images, not {height} x {width}")
            model = ARCHITECTURES[args.architecture](channels=channels, size=height)
            runs += nesting_over_checkpoints(model, [path], args.input_shape, labels=[str(path)])
        else:
            runs.append(network_nesting(load(path, input_shape=args.input_shape), label=str(path)))
    return runs


def _conv(args) -> int:
    import time

    from .conv.nesting import STATES

    start = time.perf_counter()
    sections = []
    if args.models:
        runs = _model_nesting(args)
        for run in runs:
            sections.append(f"## {run.label}\n\n{run.to_markdown()}")
            if run.unmeasured:
                sections.append("not measured (a convolution folded with a pooling or a linear layer): "
                                + ", ".join(run.unmeasured))
        if len(runs) > 1:
            rows = ["| model | " + " | ".join(STATES) + " |", "|" + "---|" * (len(STATES) + 1)]
            rows += [f"| {run.label} | " + " | ".join(f"{run.fractions()[s]:.2f}" for s in STATES) + " |"
                     for run in runs]
            sections.append("## net-wise, in order\n\n" + "\n".join(rows))
    else:
        from .conv.experiment import run_experiment

        result = run_experiment(epochs=args.epochs, seed=args.seed, size=args.size, cifar=args.cifar,
                                n_train=args.n_train, n_test=args.n_test)
        sections.append(f"## cone nesting on {result.dataset}, input {result.input_shape}\n\n{result.to_markdown()}")
        for name, checkpoints in result.nesting.items():
            for run in (checkpoints[0], checkpoints[-1]):
                sections.append(f"### {name}, {run.label}\n\n{run.to_markdown()}")
    text = "\n\n".join(sections)
    print(text)
    if args.out is not None:
        from pathlib import Path

        from ._io import write_atomic

        out = Path(args.out)
        table = write_atomic(out / "nesting.md", text + "\n")
        print(f"table: {table}")
        if args.models:
            from matplotlib.figure import Figure

            from .viz.conv_plot import plot_nesting, plot_nesting_over_training

            figure = Figure(figsize=(6, 3.5))
            if len(runs) > 1:
                plot_nesting_over_training(runs, ax=figure.subplots(), title="net-wise, in order")
            else:
                plot_nesting(runs[0], ax=figure.subplots())
            print(f"plot: {_write_png(out / 'nesting.png', figure)}")
        else:
            import io

            import torch

            from .viz.conv_plot import plot_experiment

            print(f"plot: {_write_png(out / 'nesting.png', plot_experiment(result))}")
            for name, state in result.weights.items():
                buffer = io.BytesIO()
                torch.save(state, buffer)
                print(f"weights: {write_atomic(out / f'{name}.pt', buffer.getvalue())}")
    print(f"time: {time.perf_counter() - start:.1f} s")
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

    patterns = commands.add_parser("patterns", help="activation-pattern statistics of a dataset")
    patterns.add_argument("model", help="a .onnx, .nnet file")
    patterns.add_argument("--data", required=True, help="an (n, ...) .npy array of inputs, or 'digits'")
    patterns.add_argument("--input-shape", type=_shape, default=None)
    patterns.add_argument("--layers", type=_integers, default=None,
                          help="layer indices, e.g. 0,1 (default: every layer with a ReLU)")
    patterns.add_argument("--knn", type=int, default=0, help="also the exact K nearest neighbours in Hamming distance")
    patterns.add_argument("--pairs", type=int, default=10000, help="random pairs per layer (default: %(default)s)")
    patterns.add_argument("--clusters", type=int, default=1000, help="inputs clustered (default: %(default)s)")
    patterns.add_argument("--saturation", type=float, default=0.05, help="saturated: rate <= s or >= 1 - s")
    patterns.add_argument("--seed", type=int, default=0)
    patterns.add_argument("--out", default=None, help="write the bit-packed patterns to this folder")
    patterns.add_argument("--plot", default=None, help="draw the activation histograms to this PNG")
    patterns.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    patterns.set_defaults(run=_patterns)

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

    conv = commands.add_parser(
        "conv", help="cone nesting of convolutional layers: the experiment (no MODEL) or a model's layer pairs",
        description="Without MODEL: train the LeNet-style and VGG-style CNNs on the digits (or a local CIFAR-10 "
                    "copy) and measure the nesting of their cones at every epoch. With MODEL files: the nesting "
                    "of their layer pairs, in the order given (checkpoints of one model: its evolution).")
    conv.add_argument("models", nargs="*", metavar="MODEL",
                      help="a .onnx file, or .pt/.pth weights of an experiment model (with --architecture)")
    conv.add_argument("--input-shape", type=_shape, default=None, help="C,H,W of one image, e.g. 1,16,16")
    conv.add_argument("--architecture", choices=("lenet_style", "vgg_style"), default=None,
                      help="the experiment model that .pt weights belong to")
    conv.add_argument("--cifar", default=None, metavar="PATH",
                      help="a local CIFAR-10 copy (cifar-10-batches-bin or -py, or the folder holding it)")
    conv.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    conv.add_argument("--seed", type=int, default=0)
    conv.add_argument("--size", type=int, default=None, help="image side (default: 16 digits, 32 CIFAR-10)")
    conv.add_argument("--n-train", type=int, default=None, help="use the first N CIFAR-10 training images")
    conv.add_argument("--n-test", type=int, default=None, help="use the first N CIFAR-10 test images")
    conv.add_argument("--out", default=None, help="folder for nesting.md, nesting.png and the trained weights")
    conv.set_defaults(run=_conv)
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
