"""Reports on finished runs, the top layer below the command line.

The paper-style tables (``table``: building from per-seed ``records`` into ``cells``,
rendered by ``render``, with ``significance`` marks from the paired ``stats``; ``paper``
holds the published numbers; ``cli_table`` serves ``dhcbench table``), the figures
(``figures``, logged with every run by ``run_figures``, drawn on demand by ``cli_plot``),
and segmenting new images with a finished run (``runs``, ``predict``).
"""
