"""Developer tools that check dmf's own source (``python -m dmf.tools.layers``)."""
