"""Command line: `collector run | check-config | query | tail`.

`main(argv) -> exit code`, so tests call it directly. Exit 2 means bad input
(a bad config, a port in use), with one line per problem on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from collector import __version__
from collector.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from collector.daemon import StartupError, run

    _setup_logging(args.log_level)
    try:
        config = load_config(args.config) if args.config else Config()
    except ConfigError as e:
        for line in e.problems:
            print(f"collector: bad config: {line}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run(config, config_path=args.config)
    except StartupError as e:
        print(f"collector: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        load_config(args.path)
    except ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    print("ok")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="A syslog and JSON-lines collector with an in-memory store and an HTTP query API.",
        epilog="See README.md for the configuration and the HTTP API.",
    )
    parser.add_argument("--version", action="version", version=f"collector {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="start the daemon in the foreground")
    run.add_argument("--config", metavar="PATH", help="YAML config (default: built-in defaults)")
    run.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="daemon log level on stderr (default: info)",
    )
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser(
        "check-config", help="validate a config file: ok, or one line per problem"
    )
    check.add_argument("path", metavar="PATH")
    check.set_defaults(func=_cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `collector` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
