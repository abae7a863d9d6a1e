"""One module per ``tritonctl`` subcommand; each exposes ``register(subparsers)``."""
