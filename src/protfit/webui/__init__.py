"""`protfit webui`: a Gradio app that builds a RunConfig and calls the same CLI and library functions.

No training logic lives here: the Train tab writes a YAML and starts ``python -m protfit train`` in a
subprocess, the Predict tab calls :func:`protfit.inference.load`. Every path the app reads or writes
goes through :class:`protfit.webui.workspace.Workspace`, which refuses anything outside the workspace.
"""

from protfit.webui import gradio_seed

gradio_seed.install()  # before any module of this package imports gradio
