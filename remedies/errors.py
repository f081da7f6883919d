"""User-facing errors: one line, naming the field and what is allowed; the CLI exits 2 on them."""


class ConfigError(ValueError):
    """Bad user input (config, data file, CLI argument). The message is a single line."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)
