"""`swift web-ui [flags]`: flags checked before gradio is imported, so mistakes and --help answer at once."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from swift.cli.parser import str2bool
from swift.ui.forms import MESSAGES
from swift.ui.i18n import check_lang, text


@dataclass
class WebUIOptions:
    """The web UI's settings from its flags."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    lang: str = "en"
    jobs_dir: str | None = None


class WebUIError(ValueError):
    """A bad `swift web-ui` flag; the message says which and what to do."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="swift web-ui", description="Web interface (gradio): train, follow jobs, chat, export and deploy. "
        "Every form builds an ordinary `swift ...` command, shown before it runs. Needs: pip install "
        "'swiftlab[webui]'.")
    # --server_name/--server_port/--share true|false: ms-swift's spelling of the same flags
    p.add_argument("--host", "--server_name", dest="host", default="127.0.0.1", help="address to listen on "
                   "(default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network); alias --server_name")
    p.add_argument("--port", "--server_port", dest="port", type=int, default=7860,
                   help="port (default 7860); alias --server_port")
    p.add_argument("--share", nargs="?", const=True, default=False, type=str2bool, metavar="true|false",
                   help="also publish a public gradio.live link (needs --auth)")
    p.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="ask for this user name and password")
    p.add_argument("--lang", default=None, help="interface language: en or zh (default: from the system locale)")
    p.add_argument("--jobs_dir", default=None, help="folder for the jobs' logs and results (default: the "
                   "SwiftLab cache, ui-jobs)")
    return p


def parse_cli(argv: list[str]) -> WebUIOptions:
    """The options of `argv`; raises WebUIError for a bad combination (--share without --auth, ...)."""
    ns = build_parser().parse_args(argv)
    try:
        lang = check_lang(ns.lang)
    except ValueError as e:
        raise WebUIError(str(e)) from None
    auth = None
    if ns.auth is not None:
        user, sep, password = ns.auth.partition(":")
        if not sep or not user or not password:
            raise WebUIError("--auth: expected user:password, e.g. --auth admin:s3cret")
        auth = (user, password)
    if ns.share and auth is None:
        raise WebUIError(text(MESSAGES, "share_auth", lang) + " (" + (
            "a public link without a password lets anyone run commands on this machine"
            if lang == "en" else "没有密码的公开链接会让任何人都能在这台机器上运行命令") + ")")
    if not 0 < ns.port < 65536:
        raise WebUIError(f"--port: expected 1-65535, got {ns.port}")
    return WebUIOptions(ns.host, ns.port, ns.share, auth, lang, ns.jobs_dir)


def main(argv: list[str] | None = None) -> int:
    """Run the web UI until Ctrl-C; running jobs are stopped on the way out."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parse_cli(argv)
    except WebUIError as e:
        print(f"swift web-ui: {e}", file=sys.stderr)
        return 2
    from swift.ui.jobs import JobManager
    from swift.ui.webui.app import build_app, launch
    from swift.utils.errors import SwiftError

    if opts.host not in ("127.0.0.1", "localhost", "::1") and opts.auth is None:
        print(f"swift web-ui: warning: --host {opts.host} without --auth lets anyone who can reach this machine "
              "start commands on it; add --auth user:password", file=sys.stderr)
    manager = JobManager(opts.jobs_dir)
    try:
        app = build_app(manager, opts.lang)
        print(f"swift web-ui: http://{opts.host}:{opts.port}", flush=True)
        launch(app, host=opts.host, port=opts.port, share=opts.share, auth=opts.auth, block=True)
    except SwiftError as e:
        print(f"swift web-ui: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"swift web-ui: cannot listen on {opts.host}:{opts.port}: {e}", file=sys.stderr)
        return 1
    finally:
        manager.stop_all()
    return 0
