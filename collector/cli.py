"""Command line: `collector run | check-config | query | tail | stats`.

`main(argv) -> exit code`, so tests call it directly. Exit 2 means bad input
(a bad config, a port in use): `run` says why in one line on stderr,
`check-config` one line per problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from collector import __version__
from collector.config import Config, ConfigError, load_config
from collector.netio import DETAIL as NETIO_DETAIL
from collector.parse import IMPLEMENTATION_DETAIL
from collector.query import RENDER_DETAIL

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
# Options that take a value, as typed (so a negated search term like
# `-service:cron` is told apart from an option, see _split_query_terms).
_VALUE_OPTIONS = {"--url", "--token", "-n", "--limit", "-s", "--since", "--by", "--step", "--order"}
_VALUE_OPTIONS |= {f"--{n.replace('_', '-')}" for n in _FILTER_FLAGS} | {
    f"--{n}" for n in _FILTER_FLAGS
}
_FLAG_OPTIONS = {"-f", "--follow", "--json", "--utc", "-h", "--help", "--no-more"}
# `-n20`, `-s15m`, `-s-2h`: short options with their value attached (a term
# like `-service:cron` does not look like a count or a duration).
_ATTACHED = re.compile(r"-n\d+|-s[+-]?\d[\w.]*")


def _filters(args: argparse.Namespace) -> dict[str, str]:
    params = {}
    for name in _FILTER_FLAGS:
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    since = getattr(args, "since", None)
    if since is not None:
        if "start" in params:
            raise _usage(args, "give --since or --start, not both")
        text = since.strip()
        params["start"] = text if text.startswith(("-", "+")) or text == "now" else f"-{text}"
    terms = getattr(args, "query", None)
    if terms:
        params["query"] = " ".join(terms)
    return params


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


def _usage(args: argparse.Namespace, message: str) -> _UsageError:
    return _UsageError(args.parser, message)


def _zone(args: argparse.Namespace) -> dt.tzinfo | None:
    # Local time by default, as journalctl and tail show it; --utc for the
    # API's own spelling (what to paste into --start, or compare across hosts).
    return None if args.utc else dt.datetime.now().astimezone().tzinfo


def _printer(args: argparse.Namespace, follow: bool) -> Callable[[dict[str, Any]], None]:
    from collector.terminal import format_record

    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    tz = _zone(args)

    def emit(rec: dict[str, Any]) -> None:
        if args.json:
            line = json.dumps(rec, ensure_ascii=False)
        else:
            line = format_record(rec, colour=colour, tz=tz)
        try:
            print(line, flush=follow)
        except UnicodeEncodeError:
            # A lone surrogate (JSON allows "\ud800") or a terminal that is not UTF-8.
            print(line.encode("ascii", "backslashreplace").decode("ascii"), flush=follow)

    return emit


def _say(message: str) -> None:
    print(f"collector: {message}", file=sys.stderr, flush=True)


def _client_command(
    run: Callable[[argparse.Namespace], None],
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        from collector.client import ClientError

        try:
            run(args)
        except _UsageError as e:
            e.parser.print_usage(sys.stderr)
            print(f"{e.parser.prog}: error: {e}", file=sys.stderr)
            return EXIT_USAGE
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
    from collector.client import Resume, Target, follow, newest_records, query_records
    from collector.terminal import more_matched

    params = _filters(args)
    target = Target(args.url, args.token)
    emit = _printer(args, follow=args.follow)
    resume = Resume(since=params.get("start"))
    if args.order is None:
        recs, total = newest_records(target, params, args.limit)
        for rec in recs:
            resume.seen(rec)
            emit(rec)
        note = more_matched(total, len(recs))
        if note and not args.no_more:
            print(note, file=sys.stderr, flush=True)
    else:
        for rec in query_records(target, {**params, "order": args.order}, args.limit):
            resume.seen(rec)
            emit(rec)
    if args.follow:
        sys.stdout.flush()
        for rec in follow(target, params, resume, _say):
            emit(rec)


def _tail(args: argparse.Namespace) -> None:
    from collector.client import Resume, Target, follow

    params = _filters(args)
    resume = Resume(since=params.get("start"))
    emit = _printer(args, follow=True)
    for rec in follow(Target(args.url, args.token), params, resume, _say):
        emit(rec)


def _stats(args: argparse.Namespace) -> None:
    from collector.client import Target, stats
    from collector.terminal import stats_table

    params = _filters(args)
    if args.by:
        params["by"] = args.by
    if args.step:
        params["step"] = args.step
    answer = stats(Target(args.url, args.token), params)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
        return
    print(stats_table(answer, spark=sys.stdout.isatty(), tz=_zone(args)))


def _limit(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value!r}")
    return n


def _add_client_args(p: argparse.ArgumentParser, *, query: bool = True) -> None:
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
    p.add_argument(
        "-s",
        "--since",
        metavar="AGO",
        help="records from this long ago: 15m, 2h, 1d (= --start -15m)",
    )
    for name, text in _FILTER_FLAGS.items():
        # Also the parameter's own spelling (--min_level): "filters as on GET /logs".
        spellings = dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}"])
        p.add_argument(*spellings, dest=name, metavar="VALUE", help=text)
    p.add_argument("--json", action="store_true", help="print JSON, as the API has it")
    p.add_argument(
        "--utc", action="store_true", help="print times in UTC (default: local time with offset)"
    )
    if query:
        p.add_argument(
            "query",
            nargs="*",
            metavar="QUERY",
            help='search terms: words, "phrases", field:value, -term, OR (see docs/api.md)',
        )
    p.set_defaults(parser=p)


def _join_negative_times(argv: list[str]) -> list[str]:
    # argparse takes `--start -15m` for two options; `--start=-15m` is meant.
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--start", "--end", "--since") and arg.startswith("-"):
            out[-1] = f"{out[-1]}={arg}"
        elif out and out[-1] == "-s" and arg.startswith("-"):
            out[-1] = f"-s{arg}"  # a short option takes an attached value; `-s=` would keep the `=`
        else:
            out.append(arg)
    return out


def _split_query_terms(argv: list[str]) -> list[str]:
    """Move search terms after a `--`, so that `-service:cron` (a negated
    term) is not read as an option: a word starting with one `-` that is no
    option of ours is a term."""
    if not argv or argv[0] not in ("query", "tail", "stats"):
        return argv
    options: list[str] = [argv[0]]
    terms: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            terms += argv[i + 1 :]
            break
        name = arg.split("=", 1)[0]
        if name in _VALUE_OPTIONS:
            options.append(arg)
            if "=" not in arg and i + 1 < len(argv):
                options.append(argv[i + 1])
                i += 1
        elif name in _FLAG_OPTIONS or _ATTACHED.fullmatch(arg):
            options.append(arg)
        elif arg.startswith("--"):
            options.append(arg)  # an unknown long option: argparse says so
        else:
            terms.append(arg)
        i += 1
    return [*options, "--", *terms] if terms else options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="A syslog and JSON-lines collector with an in-memory store and an HTTP query API.",
        epilog="See README.md for the configuration and the HTTP API.",
        # Raw: the --version line is one line however wide the terminal is.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=(
            f"collector {__version__}, parser {IMPLEMENTATION_DETAIL}, "
            f"datagrams {NETIO_DETAIL}, pages {RENDER_DETAIL}"
        ),
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
        help="print the newest matching records, oldest first",
        description="Print the newest --limit records matching the filters and QUERY "
        "(GET /logs), oldest first, like tail -n; says on stderr how many more matched. "
        "-f goes on with records as they arrive.",
        epilog="examples:\n"
        "  collector query -s 15m 'disk full' -service:cron level>=err\n"
        "  collector query -n 20 host:web-* timeout OR refused\n"
        "  collector query -f service:sshd Failed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_client_args(query)
    query.add_argument(
        "-n", "--limit", type=_limit, default=100, help="how many records (default: 100)"
    )
    query.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="then print records as they arrive (Ctrl-C ends)",
    )
    query.add_argument(
        "--order",
        choices=["asc", "desc"],
        default=None,
        help="instead of the newest: the first --limit in this order (asc: oldest first)",
    )
    query.add_argument(
        "--no-more", action="store_true", help='do not count or print "N more matched"'
    )
    query.set_defaults(func=_client_command(_query))

    tail = sub.add_parser(
        "tail",
        help="print records as they arrive",
        description="Follow GET /tail: print matching records as they arrive, until Ctrl-C. "
        "With --start or --since, stored records from then on come first. When the "
        "daemon restarts, tail says so on stderr, reconnects, and resumes after the last "
        "record it printed.",
        epilog="example: collector tail --host web-1 level>=err",
    )
    _add_client_args(tail)
    tail.set_defaults(func=_client_command(_tail))

    stats = sub.add_parser(
        "stats",
        help="count matching records, by field and over time",
        description="Count records matching the filters and QUERY (GET /stats): the total, "
        "a table per --by field, and with --step the counts over time (a sparkline on a "
        "terminal).",
        epilog="examples:\n"
        "  collector stats -s 1h --by level,service --step 5m\n"
        "  collector stats --by fields.user_id level>=err",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_client_args(stats)
    stats.add_argument(
        "--by",
        metavar="FIELDS",
        help="level, service, host, facility, fields.KEY or sd.SD-ID.PARAM, comma-separated",
    )
    stats.add_argument("--step", metavar="DURATION", help="histogram bucket: 1m, 5m, 1h, ...")
    stats.set_defaults(func=_client_command(_stats))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `collector` console script."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_split_query_terms(_join_negative_times(raw)))
    code: int = args.func(args)
    return code
