"""The guided ways in: `swift quickstart` (a terminal wizard, also `scripts/yichuidingyin.sh`) and `swift web-ui`
(gradio). Both fill in the same forms (`swift.ui.forms`) that become ordinary `swift ...` commands, run as
subprocesses (`swift.ui.jobs`)."""
