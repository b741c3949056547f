"""What every test of the repository shares, the library's (tests/) and the
lab's (projects/<name>/tests/), run together or alone."""
import copy
import functools
import re
from collections import Counter

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
    keep_results_of_pure_config_helpers()


def keep_results_of_pure_config_helpers() -> None:
    """Two of mmengine's config helpers, each a pure function of its
    arguments (and of installed files), keep their results for the session:
    the results are the same, computed once.

    - yapf's ``FormatCode`` (``Config.pretty_text``) runs at a runner's
      start and at every checkpoint save, mostly on a text it has formatted
      before (docs/testing.md has the share of the suite's time it took).
    - ``_get_cfg_metainfo`` reads every metafile mmpretrain installs each
      time a config inherits an ``mmpretrain::`` base.
    """
    # Here, not at the top: after the tools' start-up above, which an
    # import sorter would otherwise move below mmengine.
    import mmengine.config.config as config_module
    import mmengine.config.utils as config_utils
    config_module.FormatCode = _memoized(config_module.FormatCode)
    config_utils._get_cfg_metainfo = _memoized(
        config_utils._get_cfg_metainfo)


def _memoized(function):
    """``function`` keeping its results by the ``repr`` of its arguments;
    each call gets its own copy of the result."""
    results = {}

    @functools.wraps(function)
    def memoized(*args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        if key not in results:
            results[key] = function(*args, **kwargs)
        return copy.deepcopy(results[key])
    return memoized


def pytest_collection_modifyitems(config, items) -> None:
    """Files with the most slow tests first, each file's order kept.

    ``make test`` gives each of its workers a file at a time (``--dist
    loadfile``); a long file handed out last would leave the other worker
    idle until it ends.
    """
    slow = Counter(item.path for item in items
                   if item.get_closest_marker('slow'))
    items.sort(key=lambda item: -slow[item.path])  # stable: files stay whole
