"""The ``flashdepth`` command line (argparse, torch.distributed and process-level concerns live
here, outside the ``flashdepth`` library)."""
