"""Converters from the paper's datasets, in their native layouts, to sequence folders.

Each converter does all dataset-specific decoding (file formats, units, sky and invalid rules),
writes ``<dst>/<dataset>/dataset.json`` with the official FlashDepth splits, and returns a report
(sequences, frames, invalid and sky fractions). Where the official loaders have bugs, the
converters do not copy them (each difference has an anchor in
``docs/datasets.md#official-differences``). The table of datasets
is :data:`flashdepth.data.datasets.DATASETS`.
"""
