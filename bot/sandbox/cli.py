"""The `deskbridge demo` command line. Light on purpose: bot.__main__ imports it
for every command, and the sandbox itself is loaded only when the demo runs."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

DEFAULT_PORT = 8088
PROVIDERS = ("local", "omnidesk", "zenlix", "plusofon", "iqstore")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port of the page on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--no-browser", action="store_true",
                        help="only print the page's address, do not open a browser")
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep the demo's database here (default: a temporary directory, "
                             "removed at exit)")
    parser.add_argument("--provider", choices=PROVIDERS, default="local",
                        help="run a fake of this helpdesk too, with a page to answer as its "
                             "agent (default: the built-in local desk)")
    parser.add_argument("--agent-language", choices=("en", "ru"), default="en",
                        help="language of the bot's texts in the agents' group")


def run(args: argparse.Namespace) -> int:
    from bot.sandbox.demo import DemoOptions, run_demo

    options = DemoOptions(port=args.port, open_browser=not args.no_browser, data_dir=args.dir,
                          provider=args.provider, agent_language=args.agent_language)
    try:
        return asyncio.run(run_demo(options))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
