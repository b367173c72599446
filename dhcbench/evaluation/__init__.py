"""Evaluation, below the training engine and the reports.

Per-case metrics (``metrics``), sliding-window inference and device resolution
(``inference``), scoring label maps into tidy rows (``scoring``) and segmenting new images
with a trained method (``predict``).
"""
