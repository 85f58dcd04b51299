"""The ``evalsink`` subcommands, one module each, and the comparison behind ``diff``.

The command modules import only click and the standard library at import time, because
``evalsink --help`` imports all of them; rich, pydantic and sink packages are imported inside the
command that needs them.
"""
