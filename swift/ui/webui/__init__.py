"""`swift web-ui`: the gradio web interface (extra `webui`).

Tabs: Train (SFT and alignment), Jobs (live log and loss plot, stop), Chat (the trained checkpoint), Export (merge,
quantize) and Deploy. Each form is a `swift.ui.forms` form: it shows the `swift ...` command it builds, checks the
values next to each field before anything runs, and runs the command as a `swift.ui.jobs` job. Importing this
package imports neither gradio nor torch.
"""
from swift.ui.webui.cli import WebUIError, WebUIOptions, main, parse_cli

__all__ = ["WebUIError", "WebUIOptions", "main", "parse_cli"]
