"""What every test of the repository shares, the library's (tests/) and the
lab's (projects/<name>/tests/), run together or alone."""
import re

# The tools' start-up, before anything imports a Hugging Face library:
# offline defaults and the pinned stack's known warnings quiet, here and in
# the processes the tests start.
import tools._cli as tool_start


def pytest_configure(config) -> None:
    """The tools' list of known, harmless warnings is the one list: pytest
    resets the warning filters for every test, so it goes in as ini lines
    (their message is a regular expression)."""
    for prefix, category in tool_start.KNOWN_HARMLESS_WARNINGS:
        config.addinivalue_line(
            'filterwarnings',
            f'ignore:{re.escape(prefix)}:{category.__name__}')
