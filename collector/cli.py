"""Command line: `collector run | check-config | query | tail`.

`main(argv) -> exit code`, so tests call it directly. Exit 2 means bad input
(a bad config, a port in use): `run` says why in one line on stderr,
`check-config` one line per problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from collector import __version__
from collector.config import Config, ConfigError, load_config
from collector.parse import IMPLEMENTATION_DETAIL

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
        # The contract says one line: every problem, joined (check-config lists them one per line).
        print(f"collector: bad config: {'; '.join(e.problems)}", file=sys.stderr)
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


_FILTER_FLAGS = {
    "start": "records from this time: RFC 3339, Unix seconds, now, or relative like -15m",
    "end": "records up to this time (same forms as --start)",
    "service": "service(s), comma-separated",
    "host": "host(s), comma-separated",
    "level": "level(s), comma-separated (err, warning, ...; aliases like error, warn work)",
    "min_level": "this level or more severe",
    "facility": "facility(ies), comma-separated (auth, local0, ...)",
    "q": "case-insensitive substring of the message",
}


def _filters(args: argparse.Namespace) -> dict[str, str]:
    from collector.client import absolute_time

    params = {}
    for name in _FILTER_FLAGS:
        value = getattr(args, name)
        if value is not None:
            params[name] = absolute_time(value) if name in ("start", "end") else value
    return params


def _print_records(records: Iterator[dict[str, Any]], as_json: bool, follow: bool) -> None:
    from collector.client import format_record

    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for rec in records:
        line = json.dumps(rec, ensure_ascii=False) if as_json else format_record(rec, colour)
        try:
            print(line, flush=follow)
        except UnicodeEncodeError:
            # A lone surrogate (JSON allows "\ud800") or a terminal that is not UTF-8.
            print(line.encode("ascii", "backslashreplace").decode("ascii"), flush=follow)


def _client_command(
    run: Callable[[argparse.Namespace], None],
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        from collector.client import ClientError

        try:
            run(args)
        except ClientError as e:
            print(f"collector: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            return EXIT_OK
        except BrokenPipeError:
            # `collector query | head`: the reader left; say nothing more.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK
        return EXIT_OK

    return command


def _query(args: argparse.Namespace) -> None:
    from collector.client import Target, query_records

    params = _filters(args)
    params["order"] = args.order
    target = Target(args.url, args.token)
    _print_records(query_records(target, params, args.limit), args.json, follow=False)


def _tail(args: argparse.Namespace) -> None:
    from collector.client import Target, tail_records

    records = tail_records(Target(args.url, args.token), _filters(args))
    _print_records(records, args.json, follow=True)


def _limit(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return n


def _add_client_args(p: argparse.ArgumentParser) -> None:
    from collector.client import DEFAULT_URL

    p.add_argument(
        "--url",
        default=os.environ.get("COLLECTOR_URL", DEFAULT_URL),
        help="the daemon's HTTP API (default: $COLLECTOR_URL or %(default)s)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("COLLECTOR_TOKEN"),
        help="bearer token when http.auth_token is set (default: $COLLECTOR_TOKEN)",
    )
    for name, text in _FILTER_FLAGS.items():
        # Also the parameter's own spelling (--min_level): "filters as on GET /logs".
        spellings = dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}"])
        p.add_argument(*spellings, dest=name, metavar="VALUE", help=text)
    p.add_argument("--json", action="store_true", help="print NDJSON records, as the API has them")


def _join_negative_times(argv: list[str]) -> list[str]:
    # argparse takes `--start -15m` for two options; `--start=-15m` is meant.
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--start", "--end") and arg.startswith("-"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="A syslog and JSON-lines collector with an in-memory store and an HTTP query API.",
        epilog="See README.md for the configuration and the HTTP API.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"collector {__version__}, parser {IMPLEMENTATION_DETAIL}",
    )
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

    query = sub.add_parser(
        "query",
        help="print stored records, one line each",
        description="Print records matching the filters from the daemon's HTTP API (GET /logs), "
        "following next_cursor up to --limit.",
        epilog="example: collector query --start -15m --service sshd --min-level warning",
    )
    _add_client_args(query)
    query.add_argument(
        "--limit", type=_limit, default=100, help="at most this many records (default: 100)"
    )
    query.add_argument("--order", choices=["asc", "desc"], default="asc", help="by timestamp")
    query.set_defaults(func=_client_command(_query))

    tail = sub.add_parser(
        "tail",
        help="print records as they arrive",
        description="Follow GET /tail: print matching records as they arrive, until Ctrl-C. "
        "With --start, stored records from then on come first.",
        epilog="example: collector tail --host web-1 --level err,crit",
    )
    _add_client_args(tail)
    tail.set_defaults(func=_client_command(_tail))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `collector` console script."""
    parser = build_parser()
    args = parser.parse_args(_join_negative_times(list(sys.argv[1:] if argv is None else argv)))
    code: int = args.func(args)
    return code
