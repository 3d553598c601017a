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
