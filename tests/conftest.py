"""Root conftest: pytest puts this folder on ``sys.path`` for it, so every test folder can
import the shared ``cli_helpers`` (the entry points in a subprocess)."""
